DELETE FROM broker_connections WHERE kind = 'servicebus';
ALTER TABLE broker_connections RENAME COLUMN kind TO kind_before;
ALTER TABLE broker_connections
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'kafka' CHECK (kind IN ('kafka', 'sqs'));
UPDATE broker_connections SET kind = kind_before;
ALTER TABLE broker_connections DROP COLUMN kind_before;
