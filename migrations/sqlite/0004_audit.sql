-- The audit log: one row per recorded event (MCP requests, admin and security events), in a
-- per-tenant hash chain (seq 1, 2, …; each row's hash covers its fields and the previous hash),
-- so that an edited, deleted or inserted row is found by `portcullis audit verify`.
-- Kept in step with migrations/postgres/0004_audit.sql.

CREATE TABLE audit_event (
    event_id   TEXT    NOT NULL CONSTRAINT audit_event_pk PRIMARY KEY,
    tenant_id  TEXT    NOT NULL CONSTRAINT audit_event_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    -- mcp, admin or security.
    category   TEXT    NOT NULL,
    -- What happened: an MCP method (tools/call) or an event name (registry.create, sso.sign_in…).
    action     TEXT    NOT NULL,
    actor_id   TEXT,
    actor      TEXT,
    server     TEXT,
    target     TEXT,
    -- allow, deny, ok, failed…
    outcome    TEXT    NOT NULL,
    -- JSON: the event's particulars (the rule that decided, before/after of a change…). Never a
    -- secret.
    detail     TEXT    NOT NULL,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL,
    CONSTRAINT audit_event_seq_key UNIQUE (tenant_id, seq)
);
CREATE INDEX audit_event_at_idx ON audit_event (tenant_id, at);
