-- OAuth to upstream servers: the client registration the gateway holds at each upstream's authorization
-- server, and the tokens granted there per owner ('' the shared identity, else a caller such as
-- 'user:<sub>'). Both are sealed by the gateway (mcp_gateway/oauth/vault.py) before they are written here.
CREATE TABLE oauth_clients (
    server text PRIMARY KEY,
    sealed bytea NOT NULL,
    updated double precision NOT NULL
);
CREATE TABLE oauth_grants (
    server text NOT NULL,
    owner text NOT NULL,
    sealed bytea NOT NULL,
    updated double precision NOT NULL,
    PRIMARY KEY (server, owner)
);
