-- Upstream MCP servers of a tenant, and the bearer tokens MCP clients use for the gateway.
-- Kept in step with migrations/postgres/0002_servers_and_tokens.sql.

CREATE TABLE mcp_server (
    server_id   TEXT    NOT NULL CONSTRAINT mcp_server_pk PRIMARY KEY,
    tenant_id   TEXT    NOT NULL CONSTRAINT mcp_server_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- The path segment of the gateway endpoint /mcp/{slug}; parsed by ServerSlug.
    slug        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    transport   TEXT    NOT NULL CONSTRAINT mcp_server_transport_check
                        CHECK (transport IN ('streamable_http', 'sse', 'stdio')),
    -- Transport settings (JSON of domain::ServerTransport): URL, or command, args, working dir and
    -- instance mode. Never secrets: those go to the credential vault.
    config      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT mcp_server_slug_key UNIQUE (tenant_id, slug)
);

CREATE TABLE api_token (
    api_token_id TEXT    NOT NULL CONSTRAINT api_token_pk PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL,
    -- SHA-256 (hex) of the token; the token is shown once and never stored.
    token_hash   TEXT    NOT NULL CONSTRAINT api_token_hash_key UNIQUE,
    label        TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER,
    CONSTRAINT api_token_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

INSERT INTO change_counter (topic, version) VALUES ('servers', 0), ('api_tokens', 0);
