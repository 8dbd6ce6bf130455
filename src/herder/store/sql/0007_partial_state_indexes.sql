-- The index of tasks by state holds only the states a task leaves, and the final states that
-- are rare: a task that succeeds leaves the index instead of moving to the part of it that held
-- every task that ever succeeded. Each task's insert and its finish wrote both ends of one tree
-- that grew with the table; now a tree of the tasks in flight, which stays small and in the
-- cache, and nothing for the success (docs/decisions.md).
--
-- Listing the succeeded tasks (newest first) walks the table by seq instead and skips the
-- others: as fast as before while most tasks succeed; it slows down only through long stretches
-- of other states. The conditions are comparisons joined by OR (not IN lists): SQLite uses a
-- partial index only for a query whose WHERE implies the index's, and the queries of unfinished
-- tasks are written the same way (queries.sql).
DROP INDEX tasks_state_seq;
CREATE INDEX tasks_open_state_seq ON tasks (state, seq)
    WHERE state = 'pending' OR state = 'running' OR state = 'aggregating';
CREATE INDEX tasks_failed_state_seq ON tasks (state, seq)
    WHERE state = 'failed' OR state = 'cancelled' OR state = 'timed_out';
