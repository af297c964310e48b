-- The vault: per-tenant data keys (AES-256-GCM keys, stored only wrapped by the master key,
-- the key-encryption key) and the secrets sealed under them. Every secret's ciphertext is
-- bound (associated data) to its tenant, owner table, owner row and name. server/src/vault.rs.
-- Kept in step with migrations/sqlite/0012_vault.sql.

CREATE TABLE vault_key (
    tenant_id       TEXT    NOT NULL CONSTRAINT vault_key_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    key_id          TEXT    NOT NULL,
    -- v1: + base64(nonce || AES-256-GCM(KEK, data key)), associated data names tenant and key.
    wrapped         TEXT    NOT NULL,
    -- Which master key wrapped it (its fingerprint).
    kek_fingerprint TEXT    NOT NULL,
    created_at      BIGINT NOT NULL,
    -- Set when a newer key became the active one (its secrets were re-encrypted).
    retired_at      BIGINT,
    CONSTRAINT vault_key_pk PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE vault_secret (
    tenant_id   TEXT    NOT NULL CONSTRAINT vault_secret_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- What the secret belongs to: a table, a row of it, and a name (mcp_server, its id, credential).
    owner_table TEXT    NOT NULL,
    owner_id    TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    key_id      TEXT    NOT NULL,
    -- v1: + base64(nonce || AES-256-GCM(data key, secret)).
    ciphertext  TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    CONSTRAINT vault_secret_pk PRIMARY KEY (tenant_id, owner_table, owner_id, name)
);

ALTER TABLE vault_key ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_key FORCE ROW LEVEL SECURITY;
CREATE POLICY vault_key_isolation ON vault_key
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
ALTER TABLE vault_secret ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_secret FORCE ROW LEVEL SECURITY;
CREATE POLICY vault_secret_isolation ON vault_secret
    USING (tenant_id = current_setting('portcullis.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('portcullis.tenant_id', true));
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') THEN
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON vault_key, vault_secret TO portcullis_app';
    END IF;
END $$;
