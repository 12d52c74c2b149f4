-- The model hosts an admin allows: `http:` runtimes may call only these.
-- An entry is a host, host:port, *.domain, or a URL prefix, as normalized
-- by the server.
CREATE TABLE model_hosts (
    entry TEXT PRIMARY KEY NOT NULL,
    added_by TEXT NOT NULL,
    added_at_ms BIGINT NOT NULL
);
