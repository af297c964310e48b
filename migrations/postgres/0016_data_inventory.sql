-- The data inventory (server/src/filters/inventory.rs): which categories of data each server's
-- answers carried (personal data and secret types, prompt injection), how often, first and
-- last seen. Counted by the gateway as its filters scan answers, written in batches.
-- Kept in step with migrations/sqlite/0016_data_inventory.sql.

CREATE TABLE data_inventory (
    tenant_id     TEXT    NOT NULL CONSTRAINT data_inventory_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    server_slug   TEXT    NOT NULL,
    -- A detector type (EMAIL, AWS_ACCESS_KEY…) or INJECTION.
    category      TEXT    NOT NULL,
    -- Answers that carried it.
    answers       BIGINT NOT NULL,
    -- Values found (an answer may carry several).
    findings      BIGINT NOT NULL,
    first_seen_at BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    CONSTRAINT data_inventory_pk PRIMARY KEY (tenant_id, server_slug, category)
);

ALTER TABLE data_inventory ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_inventory FORCE ROW LEVEL SECURITY;
CREATE POLICY data_inventory_isolation ON data_inventory
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON data_inventory TO portcullis_app';
    END IF;
END $$;
