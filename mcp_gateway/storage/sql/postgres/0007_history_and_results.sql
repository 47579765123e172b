-- The dashboard's upstreams page: each replica's upstream state changes and scheduled reconnects (kept as
-- long as audit rows, at most 40 days); and on a script's audit row, what it returned (with audit_arguments).
CREATE TABLE upstream_events (
    id bigserial PRIMARY KEY,
    ts double precision NOT NULL,
    server text NOT NULL,
    replica text,
    event text NOT NULL,
    detail text
);
CREATE INDEX upstream_events_server_ts ON upstream_events (server, ts);
ALTER TABLE audit ADD COLUMN result text;
