-- Audit, second slice: the fields of an MCP record (decision, client, agent, group snapshot,
-- address, session, latency split), each tenant's audit settings (argument policy, retention,
-- legal hold) and SIEM destinations with their delivery cursors.
-- Kept in step with migrations/sqlite/0005_audit_fields.sql. PostgreSQL also partitions the log
-- by month on `at` (µs since the epoch), so that a purge drops whole partitions and a search
-- over a time range reads only its months. A partitioned table's unique keys must hold the
-- partition key, so the chain's one-seq-per-tenant rule is kept by a per-tenant advisory lock
-- taken by every append (store/audit.rs) instead of UNIQUE (tenant_id, seq).

ALTER TABLE audit_event RENAME TO audit_event_v1;

CREATE TABLE audit_event (
    event_id    TEXT   NOT NULL,
    tenant_id   TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    category    TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    actor_id    TEXT,
    actor       TEXT,
    server      TEXT,
    target      TEXT,
    outcome     TEXT   NOT NULL,
    detail      TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL,
    decision    TEXT,
    client      TEXT,
    agent       TEXT,
    groups      TEXT,
    ip          TEXT,
    session_id  TEXT,
    latency_us  BIGINT,
    upstream_us BIGINT,
    CONSTRAINT audit_ev_pk PRIMARY KEY (tenant_id, seq, at),
    CONSTRAINT audit_ev_tenant_fk FOREIGN KEY (tenant_id) REFERENCES tenant (tenant_id) ON DELETE CASCADE
) PARTITION BY RANGE (at);

-- Rows no monthly partition takes (a clock far off): never refused.
CREATE TABLE audit_event_default PARTITION OF audit_event DEFAULT;

-- Creates the partition of the month holding `at_us` if it is missing. SECURITY DEFINER: the
-- application's role may not own tables.
CREATE FUNCTION portcullis_audit_partition(at_us BIGINT) RETURNS TEXT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    month_start TIMESTAMPTZ := date_trunc('month', to_timestamp(at_us / 1000000.0) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    lo BIGINT := (extract(epoch FROM month_start) * 1000000)::BIGINT;
    hi BIGINT := (extract(epoch FROM month_start + interval '1 month') * 1000000)::BIGINT;
    name TEXT := 'audit_event_' || to_char(month_start AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_event FOR VALUES FROM (%s) TO (%s)', name, lo, hi);
    END IF;
    RETURN name;
END $$;

-- Drops each monthly partition that ended before `before_us` and whose every row is covered by
-- its tenant's purge (`tenants[i]` purged through seq `through[i]`); returns how many rows went.
-- The caller has recorded each tenant's purge first and deletes what remains row by row.
CREATE FUNCTION portcullis_audit_drop_covered(tenants TEXT[], through BIGINT[], before_us BIGINT) RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    part RECORD;
    upper_bound BIGINT;
    uncovered BOOLEAN;
    n BIGINT;
    total BIGINT := 0;
BEGIN
    FOR part IN
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_event'::regclass AND c.relname <> 'audit_event_default'
    LOOP
        upper_bound := substring(part.bound FROM 'TO \(''?(-?[0-9]+)''?\)')::BIGINT;
        IF upper_bound IS NOT NULL AND upper_bound <= before_us THEN
            EXECUTE format(
                'SELECT EXISTS (SELECT 1 FROM %I p LEFT JOIN unnest($1, $2) AS c(t, s) ON c.t = p.tenant_id '
                'WHERE c.s IS NULL OR p.seq > c.s)', part.relname)
                INTO uncovered USING tenants, through;
            IF NOT uncovered THEN
                EXECUTE format('SELECT count(*) FROM %I', part.relname) INTO n;
                EXECUTE format('DROP TABLE %I', part.relname);
                total := total + n;
            END IF;
        END IF;
    END LOOP;
    RETURN total;
END $$;

-- The months the existing rows fall in, then the rows.
DO $$
DECLARE
    m BIGINT;
BEGIN
    FOR m IN SELECT DISTINCT at FROM audit_event_v1 LOOP
        PERFORM portcullis_audit_partition(m);
    END LOOP;
    PERFORM portcullis_audit_partition((extract(epoch FROM now()) * 1000000)::BIGINT);
END $$;
INSERT INTO audit_event (event_id, tenant_id, seq, at, category, action, actor_id, actor,
    server, target, outcome, detail, prev_hash, hash)
SELECT event_id, tenant_id, seq, at, category, action, actor_id, actor, server, target,
    outcome, detail, prev_hash, hash FROM audit_event_v1;
DROP TABLE audit_event_v1;

CREATE INDEX audit_ev_at_idx     ON audit_event (tenant_id, at);
CREATE INDEX audit_ev_actor_idx  ON audit_event (tenant_id, actor, seq);
CREATE INDEX audit_ev_server_idx ON audit_event (tenant_id, server, seq);
CREATE INDEX audit_ev_action_idx ON audit_event (tenant_id, action, seq);
CREATE INDEX audit_ev_event_idx  ON audit_event (event_id);

ALTER TABLE audit_event ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_event FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_event_isolation ON audit_event
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

CREATE TABLE audit_settings (
    tenant_id         TEXT    NOT NULL CONSTRAINT audit_settings_pk PRIMARY KEY
                              CONSTRAINT audit_settings_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    arguments         TEXT    NOT NULL DEFAULT 'hashed',
    retention_days    BIGINT,
    retention_preset  TEXT,
    legal_hold        BOOLEAN NOT NULL DEFAULT FALSE,
    legal_hold_reason TEXT,
    last_purge_at     BIGINT,
    last_purged       BIGINT,
    updated_at        BIGINT  NOT NULL
);

CREATE TABLE siem_destination (
    destination_id TEXT    NOT NULL CONSTRAINT siem_destination_pk PRIMARY KEY,
    tenant_id      TEXT    NOT NULL CONSTRAINT siem_destination_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    settings       TEXT    NOT NULL,
    secret_sealed  TEXT,
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    cursor_seq     BIGINT  NOT NULL DEFAULT 0,
    delivered      BIGINT  NOT NULL DEFAULT 0,
    last_ok_at     BIGINT,
    last_error     TEXT,
    last_error_at  BIGINT,
    failures       BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    CONSTRAINT siem_destination_name_key UNIQUE (tenant_id, name)
);

ALTER TABLE audit_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_settings_isolation ON audit_settings
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE siem_destination ENABLE ROW LEVEL SECURITY;
ALTER TABLE siem_destination FORCE ROW LEVEL SECURITY;
CREATE POLICY siem_destination_isolation ON siem_destination
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON audit_event, audit_settings, siem_destination TO portcullis_app';
        EXECUTE 'GRANT EXECUTE ON FUNCTION portcullis_audit_partition(BIGINT), portcullis_audit_drop_covered(TEXT[], BIGINT[], BIGINT) TO portcullis_app';
    END IF;
END $$;

-- Where a purged chain goes on: the seq and hash of the last record a purge removed.
CREATE TABLE audit_anchor (
    tenant_id   TEXT    NOT NULL CONSTRAINT audit_anchor_pk PRIMARY KEY
                        CONSTRAINT audit_anchor_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    anchor_seq  BIGINT NOT NULL,
    anchor_hash TEXT    NOT NULL
);

INSERT INTO change_counter (topic, version) VALUES ('audit', 0);

ALTER TABLE audit_anchor ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_anchor FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_anchor_isolation ON audit_anchor
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON audit_anchor TO portcullis_app';
    END IF;
END $$;
