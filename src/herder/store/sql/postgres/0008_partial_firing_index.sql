-- Only tasks fired by a schedule are in the index that makes a firing unique: the others (the
-- NULLs, which never conflict) cost every insert an index entry for nothing.
DROP INDEX tasks_schedule_firing;
CREATE UNIQUE INDEX tasks_schedule_firing ON tasks (schedule, fired_at) WHERE schedule IS NOT NULL;
