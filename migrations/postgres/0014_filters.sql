-- Filter policies: what the gateway does with personal data and secrets in answers, per
-- server (slug) or for the whole tenant ('*'). server/src/filters/. A write bumps the
-- 'servers' counter (the gateway snapshot holds the policies).
-- Kept in step with migrations/sqlite/0014_filters.sql.

CREATE TABLE filter_policy (
    tenant_id   TEXT    NOT NULL CONSTRAINT filter_policy_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- A server's slug, or '*': the tenant's default.
    server_slug TEXT    NOT NULL,
    -- JSON of filters::Policy.
    settings    TEXT    NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT filter_policy_pk PRIMARY KEY (tenant_id, server_slug)
);

ALTER TABLE filter_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE filter_policy FORCE ROW LEVEL SECURITY;
CREATE POLICY filter_policy_isolation ON filter_policy
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON filter_policy TO portcullis_app';
    END IF;
END $$;
