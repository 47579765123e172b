-- Round one's schema (IF NOT EXISTS: databases made before versioned migrations already have it).
CREATE TABLE IF NOT EXISTS keys (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, team TEXT, groups TEXT NOT NULL,
    created REAL NOT NULL, revoked REAL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, key TEXT NOT NULL, team TEXT, endpoint TEXT NOT NULL,
    kind TEXT NOT NULL, server TEXT, tool TEXT NOT NULL, outcome TEXT NOT NULL, latency_ms REAL NOT NULL,
    arg_bytes INTEGER NOT NULL, result_bytes INTEGER NOT NULL, error TEXT, arguments TEXT,
    execution_id TEXT, approval TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
