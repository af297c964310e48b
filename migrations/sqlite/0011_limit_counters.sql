-- Rate-limit counters shared by every replica: each replica counts in memory and adds what it
-- counted here about once a second, reading back the totals of the counters any replica
-- changed lately (gateway/limits.rs). One row per
-- (rule, value, window); windows are UTC minutes and days, numbered from the epoch.
-- Kept in step with migrations/postgres/0011_limit_counters.sql.

CREATE TABLE limit_counter (
    tenant_id    TEXT    NOT NULL CONSTRAINT limit_counter_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    limit_id     TEXT    NOT NULL,
    value        TEXT    NOT NULL,
    -- minute or day
    kind         TEXT    NOT NULL,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    -- When a replica last added to it (µs): replicas read the counters active lately.
    updated_at   INTEGER NOT NULL,
    CONSTRAINT limit_counter_pk PRIMARY KEY (tenant_id, limit_id, value, kind, window_start)
);
