ALTER TABLE flows DROP COLUMN concurrency;
ALTER TABLE flows DROP COLUMN ordering;
