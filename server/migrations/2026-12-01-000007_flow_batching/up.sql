-- How a subscribe flow batches its inputs for a model that takes batches:
-- inputs per request (1: one at a time) and the longest wait, in
-- milliseconds, for a batch to fill.
ALTER TABLE flows ADD COLUMN batch_size INTEGER NOT NULL DEFAULT 1;
ALTER TABLE flows ADD COLUMN batch_wait_ms INTEGER NOT NULL DEFAULT 20;
