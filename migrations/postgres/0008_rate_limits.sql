-- Rate limits and quotas per tenant: each rule applies to a subject (user, agent, client, server
-- or tool) — one value, or each value separately ("*") — with requests per minute, concurrent
-- calls and a daily quota. Kept in step with migrations/sqlite/0008_rate_limits.sql.

CREATE TABLE rate_limit (
    limit_id           TEXT    NOT NULL CONSTRAINT rate_limit_pk PRIMARY KEY,
    tenant_id          TEXT    NOT NULL CONSTRAINT rate_limit_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- user (email), agent (credential name), client (clientInfo name), server (slug), tool (name).
    subject            TEXT    NOT NULL,
    -- The value the rule is for, or * for each value separately.
    value              TEXT    NOT NULL,
    requests_per_minute BIGINT,
    concurrent         BIGINT,
    per_day            BIGINT,
    created_at         BIGINT NOT NULL
);

INSERT INTO change_counter (topic, version) VALUES ('limits', 0);

ALTER TABLE rate_limit ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_limit FORCE ROW LEVEL SECURITY;
CREATE POLICY rate_limit_isolation ON rate_limit
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limit TO portcullis_app';
    END IF;
END $$;
