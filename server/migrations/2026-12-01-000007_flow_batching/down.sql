ALTER TABLE flows DROP COLUMN batch_wait_ms;
ALTER TABLE flows DROP COLUMN batch_size;
