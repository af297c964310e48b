-- Sessions of the gateway's own (stdio and legacy SSE upstreams, server/src/gateway/session.rs)
-- are carried on by another replica too: it needs the protocol version the session
-- negotiated. NULL for a Streamable HTTP upstream's session (the upstream holds its version).
-- Kept in step with migrations/sqlite/0020_gateway_session_version.sql.
ALTER TABLE gateway_session ADD COLUMN protocol_version TEXT;
