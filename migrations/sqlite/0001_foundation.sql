-- Foundation: tenants, their users and bootstrap admin tokens, platform settings, web sessions,
-- and the change counters that tell running servers to refresh their in-memory snapshots.
-- Times are UTC microseconds since the Unix epoch (INTEGER), the same in both engines.
-- Kept in step with migrations/postgres/0001_foundation.sql.

CREATE TABLE tenant (
    tenant_id  TEXT    NOT NULL CONSTRAINT tenant_pk PRIMARY KEY,
    -- The subdomain label; parsed by TenantSlug before it gets here.
    slug       TEXT    NOT NULL CONSTRAINT tenant_slug_key UNIQUE,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE tenant_user (
    user_id      TEXT    NOT NULL CONSTRAINT tenant_user_pk PRIMARY KEY,
    tenant_id    TEXT    NOT NULL CONSTRAINT tenant_user_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    email        TEXT    NOT NULL,
    display_name TEXT,
    -- Tenant administrators may use /admin and /api/v1 with an admin token.
    is_admin     INTEGER NOT NULL DEFAULT 0,
    -- A deactivated user keeps their history but can do nothing.
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    CONSTRAINT tenant_user_email_key UNIQUE (tenant_id, email),
    CONSTRAINT tenant_user_tenant_key UNIQUE (tenant_id, user_id)
);

CREATE TABLE admin_token (
    admin_token_id TEXT    NOT NULL CONSTRAINT admin_token_pk PRIMARY KEY,
    tenant_id      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    -- SHA-256 (hex) of the token; the token itself is shown once and never stored.
    token_hash     TEXT    NOT NULL CONSTRAINT admin_token_hash_key UNIQUE,
    label          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    revoked_at     INTEGER,
    -- The token's user must belong to the token's tenant.
    CONSTRAINT admin_token_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE platform_setting (
    name       TEXT    NOT NULL CONSTRAINT platform_setting_pk PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Browser sessions (tower-sessions records). Host-only cookies keep a session on its own host;
-- the record also names its tenant, checked on every request.
CREATE TABLE web_session (
    session_id TEXT    NOT NULL CONSTRAINT web_session_pk PRIMARY KEY,
    data       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX web_session_expires_idx ON web_session (expires_at);

-- Bumped in the same transaction as a change that running servers must see (tenants, policy…);
-- servers poll it (SQLite) or get a NOTIFY (PostgreSQL) and rebuild their snapshots.
CREATE TABLE change_counter (
    topic   TEXT    NOT NULL CONSTRAINT change_counter_pk PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO change_counter (topic, version) VALUES ('tenants', 0);
