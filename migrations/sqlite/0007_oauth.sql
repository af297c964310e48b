-- MCP client authorization: Portcullis is the OAuth 2.1 authorization server for its own
-- gateway. Clients (dynamically registered), one-time authorization codes, grants (a user's
-- consent to a client for one gateway endpoint) and the tokens of each grant, all hashed.
-- Kept in step with migrations/postgres/0007_oauth.sql.

CREATE TABLE oauth_client (
    -- Ours (pcc_…) or, for a client known by its metadata document, that document's URL.
    client_id     TEXT    NOT NULL,
    tenant_id     TEXT    NOT NULL CONSTRAINT oauth_client_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    -- JSON array; an authorization request must name one of them exactly.
    redirect_uris TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    CONSTRAINT oauth_client_pk PRIMARY KEY (tenant_id, client_id)
);

CREATE TABLE oauth_code (
    code_hash      TEXT    NOT NULL CONSTRAINT oauth_code_pk PRIMARY KEY,
    tenant_id      TEXT    NOT NULL CONSTRAINT oauth_code_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    client_id      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    code_challenge TEXT    NOT NULL,
    -- The gateway endpoint (server slug) the tokens will be for (RFC 8707 resource).
    server         TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    -- Set when redeemed; a second redemption revokes the grant it made.
    grant_id       TEXT
);

CREATE TABLE oauth_grant (
    grant_id   TEXT    NOT NULL CONSTRAINT oauth_grant_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT oauth_grant_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    server     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE oauth_token (
    token_hash TEXT    NOT NULL CONSTRAINT oauth_token_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT oauth_token_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    grant_id   TEXT    NOT NULL,
    -- access or refresh.
    kind       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    -- Refresh tokens: set when rotated; presenting it again revokes the whole grant.
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX oauth_token_grant_idx ON oauth_token (tenant_id, grant_id);
