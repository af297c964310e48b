-- Who opened each MCP session of a Streamable HTTP upstream (server/src/gateway/mod.rs,
-- HttpSessions): the session itself lives at the upstream, so any replica can carry it on once
-- it knows the session's owner. Written when the upstream hands out the id, read by a replica
-- that does not know the id (its own memory first), removed when the client ends the session
-- and a day after it began. The id is stored as its SHA-256.
-- Kept in step with migrations/sqlite/0019_gateway_sessions.sql.
CREATE TABLE gateway_session (
    session_hash TEXT    NOT NULL CONSTRAINT gateway_session_pk PRIMARY KEY,
    tenant_id    TEXT    NOT NULL CONSTRAINT gateway_session_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    user_id      TEXT    NOT NULL,
    server_slug  TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE INDEX gateway_session_created_idx ON gateway_session (created_at);

ALTER TABLE gateway_session ENABLE ROW LEVEL SECURITY;
ALTER TABLE gateway_session FORCE ROW LEVEL SECURITY;
CREATE POLICY gateway_session_isolation ON gateway_session
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON gateway_session TO portcullis_app';
    END IF;
END $$;
