-- OAuth to upstream servers: the client registration the gateway holds at each upstream's authorization
-- server, and the tokens granted there per owner ('' the shared identity, else a caller such as
-- 'user:<sub>'). Both are sealed by the gateway (mcp_gateway/oauth/vault.py) before they are written here.
CREATE TABLE oauth_clients (server TEXT PRIMARY KEY, sealed BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE oauth_grants (
    server TEXT NOT NULL, owner TEXT NOT NULL, sealed BLOB NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (server, owner)
);
