-- Upstream MCP servers of a tenant, and the bearer tokens MCP clients use for the gateway.
-- Kept in step with migrations/sqlite/0002_servers_and_tokens.sql; PostgreSQL adds RLS.

CREATE TABLE mcp_server (
    server_id   TEXT   NOT NULL CONSTRAINT mcp_server_pk PRIMARY KEY,
    tenant_id   TEXT   NOT NULL CONSTRAINT mcp_server_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- The path segment of the gateway endpoint /mcp/{slug}; parsed by ServerSlug.
    slug        TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    transport   TEXT   NOT NULL CONSTRAINT mcp_server_transport_check
                       CHECK (transport IN ('streamable_http', 'sse', 'stdio')),
    -- Transport settings (JSON of domain::ServerTransport): URL, or command, args, working dir and
    -- instance mode. Never secrets: those go to the credential vault.
    config      TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT mcp_server_slug_key UNIQUE (tenant_id, slug)
);

CREATE TABLE api_token (
    api_token_id TEXT   NOT NULL CONSTRAINT api_token_pk PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    -- SHA-256 (hex) of the token; the token is shown once and never stored.
    token_hash   TEXT   NOT NULL CONSTRAINT api_token_hash_key UNIQUE,
    label        TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    revoked_at   BIGINT,
    CONSTRAINT api_token_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

INSERT INTO change_counter (topic, version) VALUES ('servers', 0), ('api_tokens', 0);

ALTER TABLE mcp_server ENABLE ROW LEVEL SECURITY;
ALTER TABLE mcp_server FORCE ROW LEVEL SECURITY;
CREATE POLICY mcp_server_isolation ON mcp_server
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE api_token ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_token FORCE ROW LEVEL SECURITY;
CREATE POLICY api_token_isolation ON api_token
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON mcp_server, api_token TO portcullis_app');
    END IF;
END $$;
