-- The dashboard's usage page: Code Mode's token savings, one row per key per UTC day (booked in
-- batches by every process), and a small index over the audit rows of calls that needed approval.
CREATE TABLE token_savings (
    day REAL NOT NULL, key TEXT NOT NULL, lists INTEGER NOT NULL, sent_tokens INTEGER NOT NULL,
    full_tokens INTEGER NOT NULL, PRIMARY KEY (day, key)
);
CREATE INDEX audit_approval_ts ON audit (ts) WHERE approval IS NOT NULL OR outcome = 'ApprovalRefused';
