-- Retention (--keep-finished, docs/time.md "Retention"): the master deletes the finished tasks
-- older than a cutoff, oldest first, a batch at a time. This index finds them without a walk of
-- the table; it holds only finished tasks (finished_at is set when a task reaches a final state).
-- Space: the deleted rows' space is made reusable by autovacuum, as for any other delete.
CREATE INDEX tasks_finished_at ON tasks (finished_at) WHERE finished_at IS NOT NULL;
