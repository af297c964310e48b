-- Filter policies: what the gateway does with personal data and secrets in answers, per
-- server (slug) or for the whole tenant ('*'). server/src/filters/. A write bumps the
-- 'servers' counter (the gateway snapshot holds the policies).
-- Kept in step with migrations/postgres/0014_filters.sql.

CREATE TABLE filter_policy (
    tenant_id   TEXT    NOT NULL CONSTRAINT filter_policy_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- A server's slug, or '*': the tenant's default.
    server_slug TEXT    NOT NULL,
    -- JSON of filters::Policy.
    settings    TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT filter_policy_pk PRIMARY KEY (tenant_id, server_slug)
);
