-- Foundation: tenants, their users and bootstrap admin tokens, platform settings, web sessions,
-- and the change counters that tell running servers to refresh their in-memory snapshots.
-- Times are UTC microseconds since the Unix epoch (BIGINT), the same in both engines.
-- Kept in step with migrations/sqlite/0001_foundation.sql; PostgreSQL adds row-level security.

CREATE TABLE tenant (
    tenant_id  TEXT   NOT NULL CONSTRAINT tenant_pk PRIMARY KEY,
    -- The subdomain label; parsed by TenantSlug before it gets here.
    slug       TEXT   NOT NULL CONSTRAINT tenant_slug_key UNIQUE,
    name       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tenant_user (
    user_id      TEXT    NOT NULL CONSTRAINT tenant_user_pk PRIMARY KEY,
    tenant_id    TEXT    NOT NULL CONSTRAINT tenant_user_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    email        TEXT    NOT NULL,
    display_name TEXT,
    -- Tenant administrators may use /admin and /api/v1 with an admin token.
    is_admin     BOOLEAN NOT NULL DEFAULT FALSE,
    -- A deactivated user keeps their history but can do nothing.
    active       BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL,
    CONSTRAINT tenant_user_email_key UNIQUE (tenant_id, email),
    CONSTRAINT tenant_user_tenant_key UNIQUE (tenant_id, user_id)
);

CREATE TABLE admin_token (
    admin_token_id TEXT   NOT NULL CONSTRAINT admin_token_pk PRIMARY KEY,
    tenant_id      TEXT   NOT NULL,
    user_id        TEXT   NOT NULL,
    -- SHA-256 (hex) of the token; the token itself is shown once and never stored.
    token_hash     TEXT   NOT NULL CONSTRAINT admin_token_hash_key UNIQUE,
    label          TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    revoked_at     BIGINT,
    -- The token's user must belong to the token's tenant.
    CONSTRAINT admin_token_user_fk FOREIGN KEY (tenant_id, user_id)
        REFERENCES tenant_user (tenant_id, user_id) ON DELETE CASCADE
);

CREATE TABLE platform_setting (
    name       TEXT   NOT NULL CONSTRAINT platform_setting_pk PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Browser sessions (tower-sessions records). Host-only cookies keep a session on its own host;
-- the record also names its tenant, checked on every request.
CREATE TABLE web_session (
    session_id TEXT   NOT NULL CONSTRAINT web_session_pk PRIMARY KEY,
    data       TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_session_expires_idx ON web_session (expires_at);

-- Bumped in the same transaction as a change that running servers must see (tenants, policy…);
-- every replica LISTENs on portcullis_changes and also polls the counters as a safety net.
CREATE TABLE change_counter (
    topic   TEXT   NOT NULL CONSTRAINT change_counter_pk PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO change_counter (topic, version) VALUES ('tenants', 0);

CREATE FUNCTION change_counter_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('portcullis_changes', NEW.topic);
    RETURN NEW;
END $$;
CREATE TRIGGER change_counter_notify_trg AFTER UPDATE ON change_counter
    FOR EACH ROW EXECUTE FUNCTION change_counter_notify();

-- Row-level security: a tenant-owned row is visible only while the transaction has set
-- portcullis.tenant_id to its tenant (Store::tenant_tx does that). FORCE applies it to the
-- table owner as well; superusers bypass RLS, so the server switches to the unprivileged role
-- portcullis_app on every pooled connection (see store/mod.rs).
ALTER TABLE tenant_user ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_user FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_user_isolation ON tenant_user
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

ALTER TABLE admin_token ENABLE ROW LEVEL SECURITY;
ALTER TABLE admin_token FORCE ROW LEVEL SECURITY;
CREATE POLICY admin_token_isolation ON admin_token
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));

-- The role the server runs its queries as. Roles are cluster-wide, so another database may have
-- created it already (or be creating it right now); a login without CREATEROLE skips it and
-- relies on FORCE ROW LEVEL SECURITY, which binds a non-superuser owner too.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        CREATE ROLE portcullis_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
    WHEN insufficient_privilege THEN RAISE NOTICE 'cannot create role portcullis_app; relying on FORCE ROW LEVEL SECURITY';
END $$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO portcullis_app', current_schema());
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO portcullis_app', current_schema());
    END IF;
END $$;
