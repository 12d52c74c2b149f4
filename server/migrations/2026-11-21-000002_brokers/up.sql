CREATE TABLE broker_connections (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    bootstrap_servers TEXT NOT NULL,
    security_protocol TEXT NOT NULL,
    sasl_mechanism TEXT,
    username TEXT,
    -- Encrypted with the server's secret key; never sent to the browser.
    password_encrypted TEXT,
    ca_pem_encrypted TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE topic_grants (
    connection_id TEXT NOT NULL REFERENCES broker_connections (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    algorithm_id TEXT NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    can_subscribe BOOLEAN NOT NULL,
    can_publish BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, topic, algorithm_id)
);

CREATE TABLE flows (
    id TEXT PRIMARY KEY NOT NULL,
    algorithm_id TEXT NOT NULL REFERENCES algorithms (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES broker_connections (id) ON DELETE CASCADE,
    topic TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('subscribe', 'publish')),
    version TEXT NOT NULL,
    dlq_topic TEXT,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (algorithm_id, connection_id, topic, direction)
);

CREATE INDEX flows_connection_id ON flows (connection_id);
