-- MCP client authorization: Portcullis is the OAuth 2.1 authorization server for its own
-- gateway. Clients (dynamically registered), one-time authorization codes, grants (a user's
-- consent to a client for one gateway endpoint) and the tokens of each grant, all hashed.
-- Kept in step with migrations/sqlite/0007_oauth.sql.

CREATE TABLE oauth_client (
    -- Ours (pcc_…) or, for a client known by its metadata document, that document's URL.
    client_id     TEXT    NOT NULL,
    tenant_id     TEXT    NOT NULL CONSTRAINT oauth_client_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    -- JSON array; an authorization request must name one of them exactly.
    redirect_uris TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
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
    expires_at     BIGINT NOT NULL,
    -- Set when redeemed; a second redemption revokes the grant it made.
    grant_id       TEXT
);

CREATE TABLE oauth_grant (
    grant_id   TEXT    NOT NULL CONSTRAINT oauth_grant_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT oauth_grant_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    client_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    server     TEXT    NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE oauth_token (
    token_hash TEXT    NOT NULL CONSTRAINT oauth_token_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT oauth_token_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    grant_id   TEXT    NOT NULL,
    -- access or refresh.
    kind       TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Refresh tokens: set when rotated; presenting it again revokes the whole grant.
    used_at    BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX oauth_token_grant_idx ON oauth_token (tenant_id, grant_id);

ALTER TABLE oauth_client ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_client FORCE ROW LEVEL SECURITY;
CREATE POLICY oauth_client_isolation ON oauth_client
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE oauth_code ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_code FORCE ROW LEVEL SECURITY;
CREATE POLICY oauth_code_isolation ON oauth_code
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE oauth_grant ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_grant FORCE ROW LEVEL SECURITY;
CREATE POLICY oauth_grant_isolation ON oauth_grant
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE oauth_token ENABLE ROW LEVEL SECURITY;
ALTER TABLE oauth_token FORCE ROW LEVEL SECURITY;
CREATE POLICY oauth_token_isolation ON oauth_token
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_client, oauth_code, oauth_grant, oauth_token TO portcullis_app';
    END IF;
END $$;
