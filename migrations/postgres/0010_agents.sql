-- Agents: principals owned by a user (or by the tenant) with an explicit tool set across
-- servers, served at /mcp/agents/{slug}, and the agents' own gateway tokens.
-- Kept in step with migrations/sqlite/0010_agents.sql.

CREATE TABLE agent (
    agent_id      TEXT    NOT NULL CONSTRAINT agent_pk PRIMARY KEY,
    tenant_id     TEXT    NOT NULL CONSTRAINT agent_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- The path segment of /mcp/agents/{slug}; parsed like a server slug.
    slug          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    description   TEXT    NOT NULL DEFAULT '',
    -- The owning user; NULL: owned by the tenant (its admins). An agent's rights are its tool
    -- set intersected with its owner's current rights.
    owner_user_id TEXT,
    -- JSON: [{"server": slug, "tools": [name or glob, ...]}, ...] (agents::ToolSet).
    tool_set      TEXT    NOT NULL,
    -- Set when an admin disables the agent (its tokens stop working; they are kept).
    disabled_at   BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    CONSTRAINT agent_slug_key UNIQUE (tenant_id, slug),
    CONSTRAINT agent_owner_fk FOREIGN KEY (tenant_id, owner_user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE agent_token (
    agent_token_id TEXT    NOT NULL CONSTRAINT agent_token_pk PRIMARY KEY,
    tenant_id      TEXT    NOT NULL CONSTRAINT agent_token_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    agent_id       TEXT    NOT NULL CONSTRAINT agent_token_agent_fk REFERENCES agent (agent_id) ON DELETE CASCADE,
    -- SHA-256 (hex) of the token (pct_agent_…); shown once, never stored.
    token_hash     TEXT    NOT NULL CONSTRAINT agent_token_hash_key UNIQUE,
    label          TEXT    NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    revoked_at     BIGINT
);
CREATE INDEX agent_token_agent_idx ON agent_token (tenant_id, agent_id);

INSERT INTO change_counter (topic, version) VALUES ('agents', 0);

ALTER TABLE agent ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_isolation ON agent
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE agent_token ENABLE ROW LEVEL SECURITY;
ALTER TABLE agent_token FORCE ROW LEVEL SECURITY;
CREATE POLICY agent_token_isolation ON agent_token
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON agent, agent_token TO portcullis_app';
    END IF;
END $$;
