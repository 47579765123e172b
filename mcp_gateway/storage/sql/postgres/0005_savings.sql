-- The dashboard's usage page: Code Mode's token savings, one row per key per UTC day (booked in
-- batches by every replica), and a small index over the audit rows of calls that needed approval.
CREATE TABLE token_savings (
    day double precision NOT NULL,
    key text NOT NULL,
    lists bigint NOT NULL,
    sent_tokens bigint NOT NULL,
    full_tokens bigint NOT NULL,
    PRIMARY KEY (day, key)
);
CREATE INDEX audit_approval_ts ON audit (ts) WHERE approval IS NOT NULL OR outcome = 'ApprovalRefused';
