-- Keys, the audit log, rate-limit windows and budgets, shared by every replica.
CREATE TABLE keys (
    name text PRIMARY KEY,
    hash text NOT NULL UNIQUE,
    team text,
    groups text[] NOT NULL,
    created double precision NOT NULL,
    revoked double precision,
    admin boolean NOT NULL DEFAULT false
);

CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    ts double precision NOT NULL,
    key text NOT NULL,
    team text,
    endpoint text NOT NULL,
    kind text NOT NULL,
    server text,
    tool text NOT NULL,
    outcome text NOT NULL,
    latency_ms double precision NOT NULL,
    arg_bytes bigint NOT NULL,
    result_bytes bigint NOT NULL,
    error text,
    arguments text,
    execution_id text,
    approval text,
    replica text
);
CREATE INDEX audit_ts ON audit (ts);
CREATE INDEX audit_key_id ON audit (key, id);

CREATE TABLE rate_events (key text NOT NULL, ts double precision NOT NULL);
CREATE INDEX rate_events_key_ts ON rate_events (key, ts);

CREATE TABLE budgets (key text PRIMARY KEY, spent double precision NOT NULL, updated double precision NOT NULL);

-- One event in every window, or none: the index (from 0) of the first full window and the seconds
-- until it has room. Keys are locked in sorted order, so two calls sharing keys cannot deadlock.
CREATE FUNCTION gw_take(names text[], limits integer[], spans double precision[], moment double precision)
RETURNS TABLE (hit integer, wait_s double precision) LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    n bigint;
    oldest double precision;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(k, 0)) FROM (SELECT DISTINCT unnest(names) AS k ORDER BY 1) AS s;
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        DELETE FROM rate_events WHERE rate_events.key = names[i] AND rate_events.ts <= moment - spans[i];
        SELECT count(*), min(rate_events.ts) INTO n, oldest FROM rate_events WHERE rate_events.key = names[i];
        IF n >= limits[i] THEN
            hit := i - 1;
            wait_s := oldest + spans[i] - moment;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    INSERT INTO rate_events (key, ts) SELECT k, moment FROM unnest(names) AS k;
END
$$;

-- `amount` added to every budget, or to none: the index of the first budget it would exceed and
-- what that budget has spent.
CREATE FUNCTION gw_charge(names text[], caps double precision[], amount double precision, moment double precision)
RETURNS TABLE (hit integer, have double precision) LANGUAGE plpgsql AS $$
DECLARE
    i integer;
    spent_now double precision;
BEGIN
    INSERT INTO budgets (key, spent, updated) SELECT DISTINCT k, 0, moment FROM unnest(names) AS k
        ON CONFLICT (key) DO NOTHING;
    PERFORM 1 FROM budgets WHERE budgets.key = ANY (names) ORDER BY budgets.key FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        SELECT budgets.spent INTO spent_now FROM budgets WHERE budgets.key = names[i];
        IF spent_now + amount > caps[i] + 1e-12 THEN
            hit := i - 1;
            have := spent_now;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
    UPDATE budgets SET spent = budgets.spent + amount, updated = moment WHERE budgets.key = ANY (names);
END
$$;
