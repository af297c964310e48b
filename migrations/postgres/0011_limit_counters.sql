-- Rate-limit counters shared by every replica: each replica counts in memory and adds what it
-- counted here about once a second, reading back the totals of the counters any replica
-- changed lately (gateway/limits.rs). One row per
-- (rule, value, window); windows are UTC minutes and days, numbered from the epoch.
-- Kept in step with migrations/sqlite/0011_limit_counters.sql.

CREATE TABLE limit_counter (
    tenant_id    TEXT    NOT NULL CONSTRAINT limit_counter_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    limit_id     TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    -- minute or day
    kind         TEXT    NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    -- When a replica last added to it (µs): replicas read the counters active lately.
    updated_at   BIGINT NOT NULL,
    CONSTRAINT limit_counter_pk PRIMARY KEY (tenant_id, limit_id, value, kind, window_start)
);

ALTER TABLE limit_counter ENABLE ROW LEVEL SECURITY;
ALTER TABLE limit_counter FORCE ROW LEVEL SECURITY;
CREATE POLICY limit_counter_isolation ON limit_counter
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON limit_counter TO portcullis_app';
    END IF;
END $$;
