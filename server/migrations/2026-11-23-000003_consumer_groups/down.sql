ALTER TABLE flows DROP COLUMN consumer_group;
