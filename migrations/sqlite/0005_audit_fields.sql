-- Audit, second slice: the fields of an MCP record (decision, client, agent, group snapshot,
-- address, session, latency split), each tenant's audit settings (argument policy, retention,
-- legal hold) and SIEM destinations with their delivery cursors.
-- Kept in step with migrations/postgres/0005_audit_fields.sql (which also partitions the log by
-- month).

ALTER TABLE audit_event ADD COLUMN decision    TEXT;
ALTER TABLE audit_event ADD COLUMN client      TEXT;
ALTER TABLE audit_event ADD COLUMN agent       TEXT;
-- The actor's groups when the event happened, as ",a,b," (so that a group filter is a LIKE).
ALTER TABLE audit_event ADD COLUMN groups      TEXT;
ALTER TABLE audit_event ADD COLUMN ip          TEXT;
ALTER TABLE audit_event ADD COLUMN session_id  TEXT;
ALTER TABLE audit_event ADD COLUMN latency_us  INTEGER;
ALTER TABLE audit_event ADD COLUMN upstream_us INTEGER;

CREATE INDEX audit_event_actor_idx  ON audit_event (tenant_id, actor, seq);
CREATE INDEX audit_event_server_idx ON audit_event (tenant_id, server, seq);
CREATE INDEX audit_event_action_idx ON audit_event (tenant_id, action, seq);

CREATE TABLE audit_settings (
    tenant_id         TEXT    NOT NULL CONSTRAINT audit_settings_pk PRIMARY KEY
                              CONSTRAINT audit_settings_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- How tool arguments are recorded: none, hashed, redacted or full.
    arguments         TEXT    NOT NULL DEFAULT 'hashed',
    -- Days a record is kept; NULL keeps records forever.
    retention_days    INTEGER,
    -- The preset the days came from (hipaa, pci_dss, gdpr, custom), for the console.
    retention_preset  TEXT,
    -- While set, nothing is purged.
    legal_hold        INTEGER NOT NULL DEFAULT 0,
    legal_hold_reason TEXT,
    -- When the last purge ran and how many records it removed.
    last_purge_at     INTEGER,
    last_purged       INTEGER,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE siem_destination (
    destination_id TEXT    NOT NULL CONSTRAINT siem_destination_pk PRIMARY KEY,
    tenant_id      TEXT    NOT NULL CONSTRAINT siem_destination_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    -- syslog, webhook or splunk_hec.
    kind           TEXT    NOT NULL,
    -- JSON: host/port/tls/ca for syslog, url for webhook and HEC. Never a secret.
    settings       TEXT    NOT NULL,
    -- The webhook's HMAC key or the HEC token, sealed under the master key.
    secret_sealed  TEXT,
    enabled        INTEGER NOT NULL DEFAULT 1,
    -- The last audit seq delivered (at-least-once: advanced only after the receiver took it).
    cursor_seq     INTEGER NOT NULL DEFAULT 0,
    delivered      INTEGER NOT NULL DEFAULT 0,
    last_ok_at     INTEGER,
    last_error     TEXT,
    last_error_at  INTEGER,
    failures       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    CONSTRAINT siem_destination_name_key UNIQUE (tenant_id, name)
);

-- Where a purged chain goes on: the seq and hash of the last record a purge removed.
CREATE TABLE audit_anchor (
    tenant_id   TEXT    NOT NULL CONSTRAINT audit_anchor_pk PRIMARY KEY
                        CONSTRAINT audit_anchor_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    anchor_seq  INTEGER NOT NULL,
    anchor_hash TEXT    NOT NULL
);

INSERT INTO change_counter (topic, version) VALUES ('audit', 0);
