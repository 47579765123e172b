-- Handshake-era (2025-11-25) HTTP sessions, so a session opened on one replica continues on any other.
CREATE TABLE sessions (
    id text PRIMARY KEY,
    owner text NOT NULL,
    protocol_version text NOT NULL,
    client text NOT NULL,
    created double precision NOT NULL
);
CREATE INDEX sessions_created ON sessions (created);

-- Messages between replicas too long for one NOTIFY (a session's answer to a server request).
CREATE TABLE messages (id bigserial PRIMARY KEY, body text NOT NULL, created double precision NOT NULL);
