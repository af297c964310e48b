-- Rate limits and quotas per tenant: each rule applies to a subject (user, agent, client, server
-- or tool) — one value, or each value separately ("*") — with requests per minute, concurrent
-- calls and a daily quota. Kept in step with migrations/postgres/0008_rate_limits.sql.

CREATE TABLE rate_limit (
    limit_id           TEXT    NOT NULL CONSTRAINT rate_limit_pk PRIMARY KEY,
    tenant_id          TEXT    NOT NULL CONSTRAINT rate_limit_tenant_fk REFERENCES tenant (tenant_id) ON DELETE CASCADE,
    -- user (email), agent (credential name), client (clientInfo name), server (slug), tool (name).
    subject            TEXT    NOT NULL,
    -- The value the rule is for, or * for each value separately.
    value              TEXT    NOT NULL,
    requests_per_minute INTEGER,
    concurrent         INTEGER,
    per_day            INTEGER,
    created_at         INTEGER NOT NULL
);

INSERT INTO change_counter (topic, version) VALUES ('limits', 0);
