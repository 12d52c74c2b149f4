-- When a session was last used: a session left idle longer than the
-- server's idle limit ends before it expires.
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET last_seen_at = created_at;
