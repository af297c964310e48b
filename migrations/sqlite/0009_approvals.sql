-- Human approval for tool calls: rules saying which calls wait for an approver, and the
-- requests themselves (pending, approved, denied, expired). Kept in step with
-- migrations/postgres/0009_approvals.sql.

CREATE TABLE approval_rule (
    rule_id      TEXT    NOT NULL CONSTRAINT approval_rule_pk PRIMARY KEY,
    tenant_id    TEXT    NOT NULL CONSTRAINT approval_rule_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- A server slug or *.
    server       TEXT    NOT NULL,
    -- A tool name glob (* for any).
    tool         TEXT    NOT NULL,
    -- destructive (only calls of tools marked or presumed destructive) or always.
    applies      TEXT    NOT NULL,
    -- How long a call waits for a decision before it is denied.
    timeout_secs INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE approval_request (
    approval_id TEXT    NOT NULL CONSTRAINT approval_request_pk PRIMARY KEY,
    tenant_id   TEXT    NOT NULL CONSTRAINT approval_request_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    user_id     TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    server      TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    -- What the approver sees of the arguments (per the tenant's argument policy).
    arguments   TEXT    NOT NULL,
    -- pending, approved, denied or expired.
    status      TEXT    NOT NULL,
    decided_by  TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    decided_at  INTEGER
);
CREATE INDEX approval_request_status_idx ON approval_request (tenant_id, status, created_at);

INSERT INTO change_counter (topic, version) VALUES ('approvals', 0);
