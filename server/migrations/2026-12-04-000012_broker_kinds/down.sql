DELETE FROM broker_connections WHERE kind <> 'kafka';
ALTER TABLE broker_connections DROP COLUMN endpoint_url;
ALTER TABLE broker_connections DROP COLUMN region;
ALTER TABLE broker_connections DROP COLUMN kind;
