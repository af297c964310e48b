-- Human approval for tool calls: rules saying which calls wait for an approver, and the
-- requests themselves (pending, approved, denied, expired). Kept in step with
-- migrations/sqlite/0009_approvals.sql.

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
    timeout_secs BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
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
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    decided_at  BIGINT
);
CREATE INDEX approval_request_status_idx ON approval_request (tenant_id, status, created_at);

INSERT INTO change_counter (topic, version) VALUES ('approvals', 0);

ALTER TABLE approval_rule ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_rule FORCE ROW LEVEL SECURITY;
CREATE POLICY approval_rule_isolation ON approval_rule
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE approval_request ENABLE ROW LEVEL SECURITY;
ALTER TABLE approval_request FORCE ROW LEVEL SECURITY;
CREATE POLICY approval_request_isolation ON approval_request
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON approval_rule, approval_request TO portcullis_app';
    END IF;
END $$;
