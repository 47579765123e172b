-- The dashboard's upstreams page: each process's upstream state changes and scheduled reconnects (kept as
-- long as audit rows, at most 40 days); and on a script's audit row, what it returned (with audit_arguments).
CREATE TABLE upstream_events (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, server TEXT NOT NULL, replica TEXT, event TEXT NOT NULL, detail TEXT
);
CREATE INDEX upstream_events_server_ts ON upstream_events (server, ts);
ALTER TABLE audit ADD COLUMN result TEXT;
