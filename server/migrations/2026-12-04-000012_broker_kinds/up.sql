-- A connection reaches a Kafka cluster or Amazon SQS. An SQS connection
-- keeps its region and endpoint here, its access key id in `username` and
-- its secret access key, sealed, in `password_encrypted`.
ALTER TABLE broker_connections
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'kafka' CHECK (kind IN ('kafka', 'sqs'));
ALTER TABLE broker_connections ADD COLUMN region TEXT;
ALTER TABLE broker_connections ADD COLUMN endpoint_url TEXT;
