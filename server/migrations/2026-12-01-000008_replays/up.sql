-- Replays of a flow's dead letters: which letters, through which version,
-- and how far each got. A replay is resumed by whichever instance holds it
-- (or takes it over once its holder stops sending heartbeats).
CREATE TABLE replays (
    id TEXT PRIMARY KEY NOT NULL,
    flow_id TEXT NOT NULL,
    version TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    -- running, done, or stopped (with a message saying why)
    state TEXT NOT NULL,
    message TEXT,
    finished_at_ms BIGINT,
    owner TEXT,
    heartbeat_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX replays_by_flow ON replays (flow_id, created_at_ms);

-- One dead letter of a replay: `topic:<dlq topic>:<partition>:<offset>` for
-- a record on the flow's Dead Letter Queue, `kept:<id>` for a kept failure.
-- outcome: pending, succeeded or failed (failed again: a new dead letter).
CREATE TABLE replay_letters (
    replay_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    flow_id TEXT NOT NULL,
    letter TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at_ms BIGINT,
    PRIMARY KEY (replay_id, seq)
);
CREATE INDEX replay_letters_by_letter ON replay_letters (flow_id, letter);
CREATE INDEX replay_letters_pending ON replay_letters (replay_id, outcome, seq);

-- Paused flows: each keeps its settings and its consumer group's offsets
-- but does not run, so that its start position can be reset.
CREATE TABLE paused_flows (
    flow_id TEXT PRIMARY KEY NOT NULL,
    at_ms BIGINT NOT NULL
);

-- Publish flows that follow the listener: they take the outputs of
-- whichever version the algorithm's subscribe flows run (and of its
-- replays), not of one fixed version.
CREATE TABLE publish_follows (
    flow_id TEXT PRIMARY KEY NOT NULL
);
