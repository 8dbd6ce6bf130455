-- Delayed tasks: a task may wait for a time (`not_before`, seconds since the epoch) in the new
-- state 'scheduled', which joins the check of states and the partial index of open states (the
-- one the queries of unfinished tasks walk).
ALTER TABLE tasks ADD COLUMN not_before DOUBLE PRECISION;
ALTER TABLE tasks DROP CONSTRAINT tasks_state_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_state_check
    CHECK (state IN ('pending', 'running', 'aggregating', 'succeeded', 'failed', 'cancelled',
                     'timed_out', 'scheduled'));
DROP INDEX tasks_open_state_seq;
CREATE INDEX tasks_open_state_seq ON tasks (state, seq)
    WHERE state IN ('pending', 'running', 'aggregating', 'scheduled');
