-- Rate-limit windows and budgets survive a restart; each audit row names the process that wrote it.
ALTER TABLE audit ADD COLUMN replica TEXT;
CREATE TABLE rate_events (key TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX rate_events_key_ts ON rate_events (key, ts);
CREATE TABLE budgets (key TEXT PRIMARY KEY, spent REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX audit_key_id ON audit (key, id);
