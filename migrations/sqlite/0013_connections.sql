-- Users' own upstream accounts: a per-user static secret or a per-user OAuth connection to a
-- server whose credential mode asks for one (server/src/connections/). The secret itself (the
-- static value, or the upstream's access and refresh tokens) is in the vault, slot
-- (upstream_connection, "{server_id}/{user_id}", token); this row is what may be listed.
-- Kept in step with migrations/postgres/0013_connections.sql.

CREATE TABLE upstream_connection (
    tenant_id  TEXT    NOT NULL CONSTRAINT upstream_connection_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    server_id  TEXT    NOT NULL CONSTRAINT upstream_connection_server_fk REFERENCES mcp_server (server_id) ON DELETE CASCADE,
    user_id    TEXT    NOT NULL,
    -- static | oauth
    kind       TEXT    NOT NULL,
    -- The scope the upstream granted (oauth).
    scope      TEXT    NOT NULL DEFAULT '',
    -- When the upstream access token expires (oauth; NULL: unknown or static).
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT upstream_connection_pk PRIMARY KEY (tenant_id, server_id, user_id),
    CONSTRAINT upstream_connection_user_fk FOREIGN KEY (user_id)
        REFERENCES tenant_user (user_id) ON DELETE CASCADE
);
CREATE INDEX upstream_connection_user_idx ON upstream_connection (tenant_id, user_id);

INSERT INTO change_counter (topic, version) VALUES ('connections', 0);
