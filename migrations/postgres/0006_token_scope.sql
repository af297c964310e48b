-- Client authorization, first slice: personal access tokens scoped to servers, and one-step
-- revocation of everything a user holds (their console sessions end too).
-- Kept in step with migrations/sqlite/0006_token_scope.sql.

-- JSON array of server slugs the token may reach; NULL: every server its user may reach.
ALTER TABLE api_token ADD COLUMN servers TEXT;
-- Console and portal sessions signed in before this moment (µs) are no longer valid.
ALTER TABLE tenant_user ADD COLUMN sessions_revoked_at BIGINT;
