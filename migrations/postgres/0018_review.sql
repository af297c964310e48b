-- The Security Review Pack and anomaly signals (server/src/review/).
-- Kept in step with migrations/sqlite/0018_review.sql.

-- An admin's classification of a tool (read_only, writing, destructive), which wins over the
-- annotations the server declares, in the policy and in the pack. Kept apart from
-- server_tool so that reviewing the catalog again keeps it. Writes bump 'identity'.
CREATE TABLE tool_class_override (
    tenant_id  TEXT    NOT NULL CONSTRAINT tool_class_override_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    server_id  TEXT    NOT NULL CONSTRAINT tool_class_override_server_fk REFERENCES mcp_server (server_id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    class      TEXT    NOT NULL,
    set_by     TEXT    NOT NULL,
    set_at     BIGINT  NOT NULL,
    CONSTRAINT tool_class_override_pk PRIMARY KEY (server_id, name)
);

-- Anomaly signals raised over the audit trail: one row per signal, keyed so that the same
-- window is never raised twice (by this replica or another).
CREATE TABLE anomaly_signal (
    signal_id  TEXT    NOT NULL CONSTRAINT anomaly_signal_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT anomaly_signal_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- kind:subject:window: what makes a signal the same one.
    dedup_key  TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    severity   TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    summary    TEXT    NOT NULL,
    -- JSON: the numbers behind it, the audit search that finds its records, their seqs.
    detail     TEXT    NOT NULL,
    CONSTRAINT anomaly_signal_key UNIQUE (tenant_id, dedup_key)
);
CREATE INDEX anomaly_signal_at_idx ON anomaly_signal (tenant_id, at);

ALTER TABLE tool_class_override ENABLE ROW LEVEL SECURITY;
ALTER TABLE tool_class_override FORCE ROW LEVEL SECURITY;
CREATE POLICY tool_class_override_isolation ON tool_class_override
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE anomaly_signal ENABLE ROW LEVEL SECURITY;
ALTER TABLE anomaly_signal FORCE ROW LEVEL SECURITY;
CREATE POLICY anomaly_signal_isolation ON anomaly_signal
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON tool_class_override TO portcullis_app';
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON anomaly_signal TO portcullis_app';
    END IF;
END $$;
