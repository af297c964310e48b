-- Identity and access: where users come from (SCIM, SSO, the console), groups and their members,
-- registries of servers mapped to everyone, groups or users with tool-level rules, the reviewed
-- tool catalog of each server, and per-tenant settings (the SCIM token hash, the IdP).
-- Kept in step with migrations/sqlite/0003_identity.sql; PostgreSQL adds RLS.

-- local (console/CLI), scim or sso.
ALTER TABLE tenant_user ADD COLUMN source TEXT NOT NULL DEFAULT 'local';
-- SCIM userName (unique per tenant when set) and the IdP's id for the user.
ALTER TABLE tenant_user ADD COLUMN user_name TEXT;
ALTER TABLE tenant_user ADD COLUMN external_id TEXT;
-- The SCIM attributes the product does not model (name, emails, enterprise extension…), as JSON.
ALTER TABLE tenant_user ADD COLUMN scim_attributes TEXT;
ALTER TABLE tenant_user ADD COLUMN last_seen_at BIGINT;
CREATE UNIQUE INDEX tenant_user_user_name_key ON tenant_user (tenant_id, user_name);

CREATE TABLE user_group (
    group_id        TEXT    NOT NULL CONSTRAINT user_group_pk PRIMARY KEY,
    tenant_id       TEXT    NOT NULL CONSTRAINT user_group_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- The SCIM displayName, and the value an IdP puts in the groups claim.
    name            TEXT    NOT NULL,
    external_id     TEXT,
    source          TEXT    NOT NULL,
    scim_attributes TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    CONSTRAINT user_group_name_key UNIQUE (tenant_id, name),
    CONSTRAINT user_group_tenant_key UNIQUE (tenant_id, group_id)
);

CREATE TABLE group_member (
    tenant_id TEXT    NOT NULL,
    group_id  TEXT    NOT NULL,
    user_id   TEXT    NOT NULL,
    -- Who added the membership: scim, sso (replaced at every sign-in) or console.
    source    TEXT    NOT NULL,
    added_at  BIGINT NOT NULL,
    CONSTRAINT group_member_pk PRIMARY KEY (group_id, user_id),
    CONSTRAINT group_member_group_fk FOREIGN KEY (tenant_id, group_id)
        REFERENCES user_group (tenant_id, group_id) ON DELETE CASCADE,
    CONSTRAINT group_member_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);
CREATE INDEX group_member_user_idx ON group_member (tenant_id, user_id);

CREATE TABLE registry (
    registry_id TEXT    NOT NULL CONSTRAINT registry_pk PRIMARY KEY,
    tenant_id   TEXT    NOT NULL CONSTRAINT registry_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    slug        TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT registry_slug_key UNIQUE (tenant_id, slug),
    CONSTRAINT registry_tenant_key UNIQUE (tenant_id, registry_id)
);

CREATE TABLE registry_server (
    tenant_id   TEXT NOT NULL,
    registry_id TEXT NOT NULL,
    server_id   TEXT NOT NULL CONSTRAINT registry_server_server_fk REFERENCES mcp_server (server_id) ON DELETE CASCADE,
    CONSTRAINT registry_server_pk PRIMARY KEY (registry_id, server_id),
    CONSTRAINT registry_server_registry_fk FOREIGN KEY (tenant_id, registry_id)
        REFERENCES registry (tenant_id, registry_id) ON DELETE CASCADE
);

-- A registry mapped to a subject, with the rules that narrow what the subject may use.
CREATE TABLE registry_grant (
    grant_id    TEXT    NOT NULL CONSTRAINT registry_grant_pk PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    registry_id TEXT    NOT NULL,
    -- 'everyone', 'group:<group_id>' or 'user:<user_id>'.
    subject     TEXT    NOT NULL,
    group_id    TEXT,
    user_id     TEXT,
    -- JSON of policy::GrantRules (allow/deny by glob, annotations, argument conditions).
    rules       TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT registry_grant_subject_key UNIQUE (registry_id, subject),
    CONSTRAINT registry_grant_registry_fk FOREIGN KEY (tenant_id, registry_id)
        REFERENCES registry (tenant_id, registry_id) ON DELETE CASCADE,
    CONSTRAINT registry_grant_group_fk FOREIGN KEY (tenant_id, group_id)
        REFERENCES user_group (tenant_id, group_id) ON DELETE CASCADE,
    CONSTRAINT registry_grant_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

-- What a server does with tools that are not in its reviewed catalog: 'allow' (rules decide) or
-- 'deny'.
ALTER TABLE mcp_server ADD COLUMN new_tools TEXT NOT NULL DEFAULT 'allow';

-- The reviewed tool catalog of a server (recorded by an admin's test connection).
CREATE TABLE server_tool (
    tenant_id   TEXT    NOT NULL,
    server_id   TEXT    NOT NULL CONSTRAINT server_tool_server_fk REFERENCES mcp_server (server_id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    -- JSON of the tool's annotations as the server declared them.
    annotations TEXT    NOT NULL,
    reviewed_at BIGINT NOT NULL,
    CONSTRAINT server_tool_pk PRIMARY KEY (server_id, name)
);

-- Per-tenant settings: the SCIM token hash, the identity provider.
CREATE TABLE tenant_setting (
    tenant_id  TEXT    NOT NULL CONSTRAINT tenant_setting_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT tenant_setting_pk PRIMARY KEY (tenant_id, name)
);

INSERT INTO change_counter (topic, version) VALUES ('identity', 0);

ALTER TABLE user_group ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_group FORCE ROW LEVEL SECURITY;
CREATE POLICY user_group_isolation ON user_group
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE group_member ENABLE ROW LEVEL SECURITY;
ALTER TABLE group_member FORCE ROW LEVEL SECURITY;
CREATE POLICY group_member_isolation ON group_member
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE registry ENABLE ROW LEVEL SECURITY;
ALTER TABLE registry FORCE ROW LEVEL SECURITY;
CREATE POLICY registry_isolation ON registry
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE registry_server ENABLE ROW LEVEL SECURITY;
ALTER TABLE registry_server FORCE ROW LEVEL SECURITY;
CREATE POLICY registry_server_isolation ON registry_server
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE registry_grant ENABLE ROW LEVEL SECURITY;
ALTER TABLE registry_grant FORCE ROW LEVEL SECURITY;
CREATE POLICY registry_grant_isolation ON registry_grant
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE server_tool ENABLE ROW LEVEL SECURITY;
ALTER TABLE server_tool FORCE ROW LEVEL SECURITY;
CREATE POLICY server_tool_isolation ON server_tool
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE tenant_setting ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_setting FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_setting_isolation ON tenant_setting
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON user_group, group_member, registry, registry_server, registry_grant, server_tool, tenant_setting TO portcullis_app');
    END IF;
END $$;
