-- Handshake-era (2025-11-25) HTTP sessions, so a session opened by one process continues in another.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, protocol_version TEXT NOT NULL, client TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX sessions_created ON sessions (created);
