-- API keys for the REST API: each acts as its user. Only a key's SHA-256
-- is stored, with its first characters to tell keys apart.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    last_used_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id, created_at_ms);
