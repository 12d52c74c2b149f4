-- How a subscribe flow orders its runs ('partition', 'key' or 'none') and
-- how many of a partition's messages may run at once.
ALTER TABLE flows ADD COLUMN ordering TEXT NOT NULL DEFAULT 'partition';
ALTER TABLE flows ADD COLUMN concurrency INTEGER NOT NULL DEFAULT 1;
