-- A subtask's result moves into its row. Recording it was two statements on two B-trees (an
-- insert into subtask_results, then the update of the subtask's state); it is now the one
-- update, guarded by the state as before: a subtask leaves queued or running once, so its
-- result is recorded once, whichever connection tries first (SQLite runs one writer at a time,
-- and the guard is checked and the row changed in one statement). `result_attempt` is the
-- attempt whose result it is (`attempts` is the highest attempt made, which may be a later
-- one: a speculative copy, a retry whose result came too late); the time it was recorded is
-- the subtask's `finished_at`.
ALTER TABLE subtasks ADD COLUMN result TEXT;
ALTER TABLE subtasks ADD COLUMN result_attempt INTEGER;

UPDATE subtasks
SET (result, result_attempt) = (SELECT r.result, r.attempt FROM subtask_results AS r
                                WHERE r.task_id = subtasks.task_id AND r.idx = subtasks.idx)
WHERE EXISTS (SELECT 1 FROM subtask_results AS r
              WHERE r.task_id = subtasks.task_id AND r.idx = subtasks.idx);

DROP TABLE subtask_results;
