-- Tool-definition pinning (server/src/pins.rs). A reviewed tool keeps the definition an admin
-- approved (name, title, description, schemas, annotations as canonical JSON) and its SHA-256;
-- a tool whose upstream definition no longer matches is held (hidden, calls refused) with a
-- row in tool_change until an admin approves the new definition or dismisses the change. On a
-- server that denies new tools, a new tool waits in tool_change too. Writes bump 'identity'
-- (the compiled policy holds the pins and the held tools).
-- Kept in step with migrations/sqlite/0015_tool_pins.sql.

ALTER TABLE server_tool ADD COLUMN definition TEXT;
ALTER TABLE server_tool ADD COLUMN digest TEXT;

CREATE TABLE tool_change (
    tenant_id     TEXT    NOT NULL CONSTRAINT tool_change_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    server_id     TEXT    NOT NULL CONSTRAINT tool_change_server_fk REFERENCES mcp_server (server_id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    -- 'changed' (a reviewed tool's definition differs) or 'new' (outside the catalog of a
    -- server that denies new tools).
    kind          TEXT    NOT NULL,
    -- The definition the upstream serves now (canonical JSON) and its SHA-256 (hex).
    definition    TEXT    NOT NULL,
    digest        TEXT    NOT NULL,
    -- 'pending' or 'dismissed' (an admin kept the pinned definition; the tool stays hidden
    -- while the upstream serves this one).
    status        TEXT    NOT NULL DEFAULT 'pending',
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    CONSTRAINT tool_change_pk PRIMARY KEY (server_id, name)
);
CREATE INDEX tool_change_tenant ON tool_change (tenant_id, status);

ALTER TABLE tool_change ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_change FORCE ROW LEVEL SECURITY;
CREATE POLICY tool_change_isolation ON tool_change
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON tool_change TO portcullis_app';
    END IF;
END $$;
