ALTER TABLE flows DROP COLUMN failures_dropped;
DROP TABLE flow_failures;
