-- Every query of the SQLite backend, by name (SQLite dialect); herder.store.repository makes
-- them. Parameters are named (:name), except in the writes made for every task and subtask,
-- whose parameters are numbered (?1, ?2, ...; the comment above each says what they are) and
-- bound from tuples, which spares a dict per row and a lookup per parameter.
-- A block runs from its "-- name:" line to the next one. Columns are read by name, not position.

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: applied_versions
SELECT version FROM schema_version ORDER BY version;

-- name: record_version
INSERT INTO schema_version (version, name, applied_at) VALUES (:version, :name, :applied_at);

-- name: insert_task
-- The columns in order. An id already stored, or a firing of a schedule already made
-- (tasks_schedule_firing), is skipped: rowcount 0 tells the caller.
INSERT INTO tasks (id, type, params, priority, timeout, state, result, error, created_at,
                   started_at, finished_at, subtasks_total, max_retries, not_before, schedule,
                   fired_at, max_parallel, labels)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
ON CONFLICT DO NOTHING;

-- name: get_task
SELECT * FROM tasks WHERE id = :id;

-- name: get_tasks
-- "?ids" is replaced by as many "?" as there are ids (get_tasks binds them in chunks).
SELECT * FROM tasks WHERE id IN (?ids);

-- name: list_tasks
-- The four list_tasks* variants exist so that each filter walks its own index backwards; one
-- query with "(:state IS NULL OR state = :state)" would scan the whole table instead.
SELECT * FROM tasks WHERE seq < :before ORDER BY seq DESC LIMIT :limit;

-- name: list_tasks_by_state
-- Open and failed-like states walk their partial index; `succeeded` walks the table by seq
-- (0007_partial_state_indexes.sql). SQLite plans a partial index per bound value of :state.
SELECT * FROM tasks WHERE state = :state AND seq < :before ORDER BY seq DESC LIMIT :limit;

-- name: list_tasks_by_type
SELECT * FROM tasks WHERE type = :type AND seq < :before ORDER BY seq DESC LIMIT :limit;

-- name: list_tasks_by_state_and_type
SELECT * FROM tasks
WHERE state = :state AND type = :type AND seq < :before
ORDER BY seq DESC LIMIT :limit;

-- name: count_unfinished
-- (ORs, as in the partial index of open states: an IN list would not use it)
SELECT count(*) AS n FROM tasks
WHERE state = 'pending' OR state = 'running' OR state = 'aggregating' OR state = 'scheduled';

-- name: unfinished_tasks
SELECT * FROM tasks
WHERE state = 'pending' OR state = 'running' OR state = 'aggregating' OR state = 'scheduled'
ORDER BY seq;

-- name: start_task
-- (id, started_at, subtasks_total). Only a pending task starts: one cancelled while it was being
-- split stays cancelled.
UPDATE tasks SET state = 'running', started_at = ?2, subtasks_total = ?3
WHERE id = ?1 AND state = 'pending';

-- name: insert_subtask
-- (task_id, idx, part)
INSERT INTO subtasks (task_id, idx, part, state) VALUES (?1, ?2, ?3, 'queued');

-- name: set_task_state
UPDATE tasks SET state = :state WHERE id = :id AND state = :from_state;

-- name: finish_task
-- (id, state, finished_at, result, error). The state guard makes finishing happen once: a
-- second call matches no row. (ORs, not `state IN` three constants: SQLite builds a temporary
-- B-tree for such a list at each execution.)
UPDATE tasks SET state = ?2, finished_at = ?3, result = ?4, error = ?5
WHERE id = ?1
  AND (state = 'pending' OR state = 'running' OR state = 'aggregating' OR state = 'scheduled');

-- name: cancel_open_subtasks
UPDATE subtasks SET state = 'cancelled', finished_at = :finished_at
WHERE task_id = :task_id AND state IN ('queued', 'running');

-- name: start_attempt
-- (task_id, idx, attempt, worker, started_at, worker_uid). max(): the attempt number is a fencing
-- token and never goes back, even if calls cross; the start stored is that of the attempt stored,
-- so that after a restart only its worker may claim it back.
UPDATE subtasks
SET state = 'running', attempts = max(attempts, ?3),
    worker = CASE WHEN ?3 >= attempts THEN ?4 ELSE worker END,
    started_at = CASE WHEN ?3 >= attempts THEN ?5 ELSE started_at END,
    worker_uid = CASE WHEN ?3 >= attempts THEN ?6 ELSE worker_uid END, finished_at = NULL
WHERE task_id = ?1 AND idx = ?2 AND state IN ('queued', 'running');

-- name: record_result
-- (task_id, idx, attempt, result, finished_at, worker, started_at, worker_uid). Changes nothing
-- (row count 0) for an unknown or already final subtask: a result is recorded once, and a late
-- one cannot make a failed or cancelled subtask look succeeded. `worker`, `started_at` and
-- `worker_uid` are the attempt's start when it was not written before (else `worker` is NULL,
-- and the stored start stays).
UPDATE subtasks
SET state = 'succeeded', result = ?4, result_attempt = ?3, attempts = max(attempts, ?3),
    finished_at = ?5, worker = coalesce(?6, worker), started_at = coalesce(?7, started_at),
    worker_uid = CASE WHEN ?6 IS NULL THEN worker_uid ELSE ?8 END
WHERE task_id = ?1 AND idx = ?2 AND state IN ('queued', 'running');

-- name: fail_subtask
UPDATE subtasks
SET state = 'failed', attempts = max(attempts, :attempt), error = :error,
    finished_at = :finished_at
WHERE task_id = :task_id AND idx = :idx AND state IN ('queued', 'running');

-- name: retry_subtask
-- Back to queued: nobody holds it, so no worker and no start time; the error stays as the last seen.
UPDATE subtasks
SET state = 'queued', attempts = max(attempts, :attempt), error = :error, worker = NULL,
    worker_uid = NULL, started_at = NULL, finished_at = NULL
WHERE task_id = :task_id AND idx = :idx AND state IN ('queued', 'running');

-- name: requeue_subtask
UPDATE subtasks SET state = 'queued', worker = NULL, worker_uid = NULL, started_at = NULL
WHERE task_id = :task_id AND idx = :idx AND state = 'running';

-- name: get_subtasks
SELECT task_id, idx, part, state, attempts, worker, worker_uid, result, error, started_at,
       finished_at
FROM subtasks
WHERE task_id = :task_id AND idx > :after
ORDER BY idx LIMIT :limit;

-- name: get_results
SELECT result FROM subtasks WHERE task_id = :task_id ORDER BY idx;

-- name: insert_log
-- The columns in order.
INSERT INTO logs (task_id, ts, level, message, subtask, attempt, worker, kind)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8);

-- name: get_logs
SELECT * FROM logs
WHERE kind = 'log' AND task_id = :task_id AND seq > :since
ORDER BY seq LIMIT :limit;

-- name: get_task_events
SELECT * FROM logs WHERE task_id = :task_id AND seq > :since ORDER BY seq LIMIT :limit;

-- name: get_all_events
SELECT * FROM logs WHERE seq > :since ORDER BY seq LIMIT :limit;

-- name: count_logs
SELECT count(*) AS n FROM logs WHERE kind = 'log' AND task_id = :task_id;

-- Deletes every log line of the task but the newest :keep.
-- name: trim_logs
DELETE FROM logs
WHERE kind = 'log' AND task_id = :task_id AND seq < (
    SELECT seq FROM logs WHERE kind = 'log' AND task_id = :task_id
    ORDER BY seq DESC LIMIT 1 OFFSET :keep - 1
);

-- name: add_logs_dropped
UPDATE tasks SET logs_dropped = logs_dropped + :n WHERE id = :task_id;

-- name: list_tasks_by_schedule
-- (tasks_schedule_seq)
SELECT * FROM tasks WHERE schedule = :schedule AND seq < :before
ORDER BY seq DESC LIMIT :limit;

-- name: insert_schedule
-- An id already stored is skipped: row count 0 tells the caller.
INSERT INTO schedules (id, type, params, cron, every, timezone, priority, timeout, overlap,
                       created_at)
VALUES (:id, :type, :params, :cron, :every, :timezone, :priority, :timeout,
        :overlap, :created_at)
ON CONFLICT (id) DO NOTHING;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: mark_fired
-- In the transaction of the task a firing made: the schedule's latest firing moves forward only.
UPDATE schedules
SET last_target_at = :fired_at, last_run_at = :created_at, last_task_id = :task_id
WHERE id = :schedule AND (last_target_at IS NULL OR last_target_at < :fired_at);

-- name: skip_firing
-- A firing let go (overlap = 'skip') is counted once: the guard makes a second try change nothing.
UPDATE schedules SET skipped = skipped + 1, last_target_at = :fired_at
WHERE id = :id AND (last_target_at IS NULL OR last_target_at < :fired_at);

-- name: finished_before
-- Retention: the oldest finished tasks, finished before :cutoff (walks tasks_finished_at,
-- 0011_retention.sql). The final states are named one by one, so that a state added later is
-- never taken for a final one.
SELECT id FROM tasks
WHERE finished_at < :cutoff
  AND (state = 'succeeded' OR state = 'failed' OR state = 'cancelled' OR state = 'timed_out')
ORDER BY finished_at LIMIT :limit;

-- name: finished_of
-- "?ids" as in get_tasks: those of the ids whose task is finished.
SELECT id FROM tasks
WHERE id IN (?ids)
  AND (state = 'succeeded' OR state = 'failed' OR state = 'cancelled' OR state = 'timed_out');

-- name: delete_task_logs
-- (task_id) Its journal: log lines and final state.
DELETE FROM logs WHERE task_id = ?1;

-- name: delete_task_subtasks
-- (task_id) Its subtasks, with their results.
DELETE FROM subtasks WHERE task_id = ?1;

-- name: delete_task
-- (task_id) Only a finished task: the guard holds even if a caller did not check.
DELETE FROM tasks
WHERE id = ?1
  AND (state = 'succeeded' OR state = 'failed' OR state = 'cancelled' OR state = 'timed_out');
