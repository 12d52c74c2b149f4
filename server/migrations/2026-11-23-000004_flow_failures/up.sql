-- Messages a flow could not process and could not dead-letter (it has no
-- Dead Letter Queue, or writing there failed), kept so that they survive
-- restarts and every instance sees them. At most a bounded number per flow:
-- the oldest go first, counted in flows.failures_dropped.
CREATE TABLE flow_failures (
    id TEXT PRIMARY KEY NOT NULL,
    flow_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset BIGINT NOT NULL,
    version TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    -- BYTEA on both backends; SQLite keeps the blobs bound to it as they are.
    record_key BYTEA,
    record_value BYTEA,
    value_bytes BIGINT NOT NULL,
    headers TEXT NOT NULL
);
CREATE INDEX flow_failures_by_flow ON flow_failures (flow_id, at_ms);

ALTER TABLE flows ADD COLUMN failures_dropped BIGINT NOT NULL DEFAULT 0;
