-- Who did what and when: logins, connections, topics, grants, flows, API
-- keys, model hosts, and the command line's changes. Nothing secret.
CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (at_ms, id);
