-- Agents: principals owned by a user (or by the tenant) with an explicit tool set across
-- servers, served at /mcp/agents/{slug}, and the agents' own gateway tokens.
-- Kept in step with migrations/postgres/0010_agents.sql.

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
    disabled_at   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
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
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    last_used_at   INTEGER,
    revoked_at     INTEGER
);
CREATE INDEX agent_token_agent_idx ON agent_token (tenant_id, agent_id);

INSERT INTO change_counter (topic, version) VALUES ('agents', 0);
