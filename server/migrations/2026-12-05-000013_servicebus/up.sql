-- A connection may also reach an Azure Service Bus namespace: its host in
-- `bootstrap_servers`, a development endpoint's management address in
-- `endpoint_url`, its key name in `username` and its key, sealed, in
-- `password_encrypted`. The kind's CHECK is widened by moving the column.
ALTER TABLE broker_connections RENAME COLUMN kind TO kind_before;
ALTER TABLE broker_connections
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'kafka' CHECK (kind IN ('kafka', 'sqs', 'servicebus'));
UPDATE broker_connections SET kind = kind_before;
ALTER TABLE broker_connections DROP COLUMN kind_before;
