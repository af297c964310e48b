-- The data inventory (server/src/filters/inventory.rs): which categories of data each server's
-- answers carried (personal data and secret types, prompt injection), how often, first and
-- last seen. Counted by the gateway as its filters scan answers, written in batches.
-- Kept in step with migrations/postgres/0016_data_inventory.sql.

CREATE TABLE data_inventory (
    tenant_id     TEXT    NOT NULL CONSTRAINT data_inventory_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    server_slug   TEXT    NOT NULL,
    -- A detector type (EMAIL, AWS_ACCESS_KEY…) or INJECTION.
    category      TEXT    NOT NULL,
    -- Answers that carried it.
    answers       INTEGER NOT NULL,
    -- Values found (an answer may carry several).
    findings      INTEGER NOT NULL,
    first_seen_at INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    CONSTRAINT data_inventory_pk PRIMARY KEY (tenant_id, server_slug, category)
);
