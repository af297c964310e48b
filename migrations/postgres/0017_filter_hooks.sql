-- External filter hooks (server/src/filters/hooks.rs): a company's own DLP called with each
-- answer (after the built-in filters) by a signed HTTP request; it allows, denies or returns a
-- modified result. The signing secret is in the vault (slot filter_hook/{hook_id}/secret).
-- Writes bump 'servers' (the gateway snapshot holds the hooks).
-- Kept in step with migrations/sqlite/0017_filter_hooks.sql.

CREATE TABLE filter_hook (
    hook_id     TEXT    NOT NULL CONSTRAINT filter_hook_pk PRIMARY KEY,
    tenant_id   TEXT    NOT NULL CONSTRAINT filter_hook_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- A server's slug, or '*': every server of the tenant.
    server_slug TEXT    NOT NULL,
    url         TEXT    NOT NULL,
    timeout_ms  BIGINT NOT NULL,
    -- 'closed': an unreachable, slow or confused hook blocks the answer; 'open': it passes.
    fail_mode   TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX filter_hook_tenant ON filter_hook (tenant_id);

ALTER TABLE filter_hook ENABLE ROW LEVEL SECURITY;
ALTER TABLE filter_hook FORCE ROW LEVEL SECURITY;
CREATE POLICY filter_hook_isolation ON filter_hook
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON filter_hook TO portcullis_app';
    END IF;
END $$;
