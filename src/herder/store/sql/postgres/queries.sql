-- Every query of the PostgreSQL backend, by name (PostgreSQL dialect, psycopg's placeholders). The
-- writes made for every task and subtask take their parameters by position (%s) from tuples laid
-- out as herder.store.base's AttemptStart, AttemptResult... say: those whose SQL needs them in
-- another order, or more than once, read them from a one-row VALUES list, `v`, whose columns
-- name them and cast them (a parameter's type is otherwise guessed from where it is first used).
-- The others take named parameters (%(name)s). A block runs from its "-- name:" line to the next
-- one. Columns are read by name, not position. No query holds a literal percent sign (psycopg
-- would read it as a placeholder).

-- name: migration_lock
-- Held until the migrating transaction ends: two processes migrating at once apply each version
-- once (the second waits, then finds it done). The key is "herder" in ASCII, one database's own.
SELECT pg_advisory_xact_lock(114784920167794);

-- name: create_schema_version
CREATE TABLE IF NOT EXISTS schema_version (
    version    BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
);

-- name: applied_versions
SELECT version FROM schema_version ORDER BY version;

-- name: record_version
INSERT INTO schema_version (version, name, applied_at) VALUES (%(version)s, %(name)s, %(applied_at)s);

-- name: insert_task
-- The columns in order. An id already stored, or a firing of a schedule already made
-- (tasks_schedule_firing), is skipped: row count 0 tells the caller.
INSERT INTO tasks (id, type, params, priority, timeout, state, result, error, created_at,
                   started_at, finished_at, subtasks_total, max_retries, not_before, schedule,
                   fired_at, max_parallel, labels)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING;

-- name: get_task
SELECT * FROM tasks WHERE id = %(id)s;

-- name: get_tasks
-- Any number of ids in one array.
SELECT * FROM tasks WHERE id = ANY (%(ids)s::text[]);

-- name: list_tasks
-- The four list_tasks* variants exist so that each filter walks its own index backwards; one
-- query with "(state IS NULL OR state = the state)" would scan the whole table instead.
SELECT * FROM tasks WHERE seq < %(before)s ORDER BY seq DESC LIMIT %(limit)s;

-- name: list_tasks_by_state
-- Open and failed-like states walk their partial index; `succeeded` walks the table by seq
-- (0001_initial.sql). The planner matches the partial index to the value of the parameter.
SELECT * FROM tasks
WHERE state = %(state)s AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s;

-- name: list_tasks_by_type
SELECT * FROM tasks WHERE type = %(type)s AND seq < %(before)s ORDER BY seq DESC LIMIT %(limit)s;

-- name: list_tasks_by_state_and_type
SELECT * FROM tasks
WHERE state = %(state)s AND type = %(type)s AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s;

-- name: count_unfinished
SELECT count(*) AS n FROM tasks
WHERE state IN ('pending', 'running', 'aggregating', 'scheduled');

-- name: unfinished_tasks
SELECT * FROM tasks WHERE state IN ('pending', 'running', 'aggregating', 'scheduled')
ORDER BY seq;

-- name: start_task
-- (id, started_at, subtasks_total). Only a pending task starts: one cancelled while it was being
-- split stays cancelled.
UPDATE tasks AS t SET state = 'running', started_at = v.started_at,
                      subtasks_total = v.subtasks_total
FROM (VALUES (%s::text, %s::float8, %s::bigint)) AS v (id, started_at, subtasks_total)
WHERE t.id = v.id AND t.state = 'pending';

-- name: insert_subtask
-- (task_id, idx, part)
INSERT INTO subtasks (task_id, idx, part, state) VALUES (%s, %s, %s, 'queued');

-- name: set_task_state
-- Only from a state that may move to the new one (one row per such state).
UPDATE tasks SET state = %(state)s WHERE id = %(id)s AND state = %(from_state)s;

-- name: finish_tasks
-- A batch in one statement: arrays of ids, states, finished_at, results and errors, one element
-- per task (ids distinct: the caller answers a repeated id itself). The state guard makes
-- finishing happen once: a task already final is not among the ids returned. A task that
-- finished here unsuccessfully has its queued and running subtasks cancelled by the same
-- statement, so one statement is the whole of it (atomic by itself, one round trip, one plan
-- for the batch instead of one execution per task).
WITH v (id, state, finished_at, result, error) AS (
    SELECT * FROM unnest(%(ids)s::text[], %(states)s::text[], %(finished_at)s::float8[],
                         %(results)s::text[], %(errors)s::text[])
), finished AS (
    UPDATE tasks AS t
    SET state = v.state, finished_at = v.finished_at, result = v.result, error = v.error
    FROM v
    WHERE t.id = v.id AND t.state IN ('pending', 'running', 'aggregating', 'scheduled')
    RETURNING t.id, v.state, v.finished_at
), cancelled AS (
    UPDATE subtasks AS s SET state = 'cancelled', finished_at = f.finished_at
    FROM finished AS f
    WHERE s.task_id = f.id AND f.state <> 'succeeded' AND s.state IN ('queued', 'running')
)
SELECT id FROM finished;

-- name: start_attempt
-- (task_id, idx, attempt, worker, started_at, worker_uid). GREATEST: the attempt number is a
-- fencing token and never goes back, even if calls cross; the start stored is that of the
-- attempt stored, so that after a restart only its worker may claim it back.
UPDATE subtasks AS s
SET state = 'running', attempts = GREATEST(s.attempts, v.attempt),
    worker = CASE WHEN v.attempt >= s.attempts THEN v.worker ELSE s.worker END,
    started_at = CASE WHEN v.attempt >= s.attempts THEN v.started_at ELSE s.started_at END,
    worker_uid = CASE WHEN v.attempt >= s.attempts THEN v.worker_uid ELSE s.worker_uid END,
    finished_at = NULL
FROM (VALUES (%s::text, %s::bigint, %s::bigint, %s::text, %s::float8, %s::text))
     AS v (task_id, idx, attempt, worker, started_at, worker_uid)
WHERE s.task_id = v.task_id AND s.idx = v.idx AND s.state IN ('queued', 'running');

-- name: record_results
-- A batch in one statement: arrays of (task_id, idx, attempt, result, finished_at, worker,
-- started_at, worker_uid), one element per subtask (distinct: the caller answers a repeated one
-- itself). Changes nothing for an unknown or already final subtask, which is then not among the
-- keys returned: a result is recorded once, and a late one cannot make a failed or cancelled
-- subtask look succeeded. `worker`, `started_at` and `worker_uid` are the attempt's start when
-- it was not written before (else `worker` is NULL, and the stored start stays).
UPDATE subtasks AS s
SET state = 'succeeded', result = v.result, result_attempt = v.attempt,
    attempts = GREATEST(s.attempts, v.attempt), finished_at = v.finished_at,
    worker = coalesce(v.worker, s.worker), started_at = coalesce(v.started_at, s.started_at),
    worker_uid = CASE WHEN v.worker IS NULL THEN s.worker_uid ELSE v.worker_uid END
FROM unnest(%(task_ids)s::text[], %(idxs)s::bigint[], %(attempts)s::bigint[],
            %(results)s::text[], %(finished_at)s::float8[], %(workers)s::text[],
            %(started_at)s::float8[], %(worker_uids)s::text[])
     AS v (task_id, idx, attempt, result, finished_at, worker, started_at, worker_uid)
WHERE s.task_id = v.task_id AND s.idx = v.idx AND s.state IN ('queued', 'running')
RETURNING s.task_id, s.idx;

-- name: fail_subtask
UPDATE subtasks
SET state = 'failed', attempts = GREATEST(attempts, %(attempt)s), error = %(error)s,
    finished_at = %(finished_at)s
WHERE task_id = %(task_id)s AND idx = %(idx)s AND state IN ('queued', 'running');

-- name: retry_subtask
-- Back to queued: nobody holds it, so no worker and no start time; the error stays as the last seen.
UPDATE subtasks
SET state = 'queued', attempts = GREATEST(attempts, %(attempt)s), error = %(error)s,
    worker = NULL, worker_uid = NULL, started_at = NULL, finished_at = NULL
WHERE task_id = %(task_id)s AND idx = %(idx)s AND state IN ('queued', 'running');

-- name: requeue_subtask
UPDATE subtasks SET state = 'queued', worker = NULL, worker_uid = NULL, started_at = NULL
WHERE task_id = %(task_id)s AND idx = %(idx)s AND state = 'running';

-- name: get_subtasks
SELECT task_id, idx, part, state, attempts, worker, worker_uid, result, error, started_at,
       finished_at
FROM subtasks
WHERE task_id = %(task_id)s AND idx > %(after)s
ORDER BY idx LIMIT %(limit)s;

-- name: get_results
SELECT result FROM subtasks WHERE task_id = %(task_id)s ORDER BY idx;

-- name: journal_lock
-- Held by a transaction that appends to the journal until it commits: the seqs of the rows it
-- adds are taken after every earlier append committed, so a reader never sees a seq while a
-- smaller one is still to come (an event stream resumed "after seq n" misses nothing). A
-- sequence alone would not promise that to two writers. The key is "journal" in ASCII.
SELECT pg_advisory_xact_lock(29958897753022828);

-- name: insert_log
-- The columns in order; the row's seq comes back.
INSERT INTO logs (task_id, ts, level, message, subtask, attempt, worker, kind)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING seq;

-- name: get_logs
SELECT * FROM logs
WHERE kind = 'log' AND task_id = %(task_id)s AND seq > %(since)s
ORDER BY seq LIMIT %(limit)s;

-- name: get_task_events
SELECT * FROM logs WHERE task_id = %(task_id)s AND seq > %(since)s ORDER BY seq LIMIT %(limit)s;

-- name: get_all_events
SELECT * FROM logs WHERE seq > %(since)s ORDER BY seq LIMIT %(limit)s;

-- name: count_logs
SELECT count(*) AS n FROM logs WHERE kind = 'log' AND task_id = %(task_id)s;

-- name: trim_logs
-- Deletes every log line of the task but the newest `keep` (at least 1) and adds how many
-- went to the task's logs_dropped, in one statement; `dropped` says how many.
WITH newest_dropped AS (
    SELECT seq FROM logs WHERE kind = 'log' AND task_id = %(task_id)s
    ORDER BY seq DESC LIMIT 1 OFFSET %(keep)s
), dropped AS (
    DELETE FROM logs
    WHERE kind = 'log' AND task_id = %(task_id)s AND seq <= (SELECT seq FROM newest_dropped)
    RETURNING 1
), counted AS (
    UPDATE tasks SET logs_dropped = logs_dropped + (SELECT count(*) FROM dropped)
    WHERE id = %(task_id)s AND EXISTS (SELECT 1 FROM dropped)
)
SELECT count(*) AS dropped FROM dropped;

-- name: fence
-- The first statement of every write transaction of a master that holds a term: no row when the
-- term is not the current one (the write is then refused). The share lock keeps a take-over's
-- UPDATE waiting until this transaction ends, so the check holds for the whole transaction.
SELECT 1 AS current FROM herder_leader WHERE name = 'master' AND term = %(term)s FOR SHARE;

-- name: take_lead
-- Leadership when it is free, expired, or held by this same advertised URL (the same master,
-- restarted: two live processes cannot serve one address), with the next term; no row when
-- another master holds it. One statement, so two masters trying at once cannot both win.
INSERT INTO herder_leader AS l (name, term, holder, url, expires_at)
VALUES ('master', 1, %(holder)s, %(url)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
    SET term = l.term + 1, holder = EXCLUDED.holder, url = EXCLUDED.url,
        expires_at = EXCLUDED.expires_at
    WHERE l.expires_at < now() OR l.url = EXCLUDED.url
RETURNING term;

-- name: renew_lead
-- The holder of the current term extends its lease; no row once another master took it.
UPDATE herder_leader SET expires_at = now() + make_interval(secs => %(ttl)s)
WHERE name = 'master' AND term = %(term)s AND holder = %(holder)s
RETURNING term;

-- name: release_lead
-- On a clean shutdown: the lease expires now, so that a standby takes over at its next look.
UPDATE herder_leader SET expires_at = now() - interval '1 second'
WHERE name = 'master' AND term = %(term)s AND holder = %(holder)s;

-- name: end_stale_writers
-- The sessions that hold a lock on the lease row when its lease has run out: writes of a term
-- that is over, whose master died or is paused mid-transaction (in the middle of a pipeline, a
-- session is not idle, so no idle timeout ends it). Ending them rolls their writes back, which
-- is what the fence wants anyway, and frees the row for the take-over.
SELECT pg_terminate_backend(l.pid) AS ended
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE c.relname = 'herder_leader' AND l.granted AND l.pid <> pg_backend_pid()
  AND EXISTS (SELECT 1 FROM herder_leader WHERE name = 'master' AND expires_at < now());

-- name: read_lead
-- Who leads, for a standby's /healthz; `live` is false once the lease expired.
SELECT term, url, expires_at > now() AS live FROM herder_leader WHERE name = 'master';

-- name: list_tasks_by_schedule
-- (tasks_schedule_seq)
SELECT * FROM tasks WHERE schedule = %(schedule)s AND seq < %(before)s
ORDER BY seq DESC LIMIT %(limit)s;

-- name: insert_schedule
-- An id already stored is skipped: row count 0 tells the caller.
INSERT INTO schedules (id, type, params, cron, every, timezone, priority, timeout, overlap,
                       created_at)
VALUES (%(id)s, %(type)s, %(params)s, %(cron)s, %(every)s, %(timezone)s, %(priority)s, %(timeout)s,
        %(overlap)s, %(created_at)s)
ON CONFLICT (id) DO NOTHING;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s;

-- name: delete_schedule
DELETE FROM schedules WHERE id = %(id)s;

-- name: mark_fired
-- In the transaction of the task a firing made: the schedule's latest firing moves forward only.
UPDATE schedules
SET last_target_at = %(fired_at)s, last_run_at = %(created_at)s, last_task_id = %(task_id)s
WHERE id = %(schedule)s AND (last_target_at IS NULL OR last_target_at < %(fired_at)s);

-- name: skip_firing
-- A firing let go (overlap = 'skip') is counted once: the guard makes a second try change nothing.
UPDATE schedules SET skipped = skipped + 1, last_target_at = %(fired_at)s
WHERE id = %(id)s AND (last_target_at IS NULL OR last_target_at < %(fired_at)s);

-- name: finished_before
-- Retention: the oldest finished tasks, finished before the cutoff (walks tasks_finished_at,
-- 0006_retention.sql). The final states are named one by one, so that a state added later is
-- never taken for a final one.
SELECT id FROM tasks
WHERE finished_at < %(cutoff)s AND state IN ('succeeded', 'failed', 'cancelled', 'timed_out')
ORDER BY finished_at LIMIT %(limit)s;

-- name: delete_finished
-- Those of the ids whose task is finished, deleted with their journal rows and subtasks (and
-- their results) in one statement; the ids deleted come back. The foreign key of subtasks is
-- checked at the statement's end, when both are gone. FOR UPDATE: a second delete of the same
-- task at once waits, then finds nothing.
WITH doomed AS (
    SELECT id FROM tasks
    WHERE id = ANY (%(ids)s::text[])
      AND state IN ('succeeded', 'failed', 'cancelled', 'timed_out')
    FOR UPDATE
), journal AS (
    DELETE FROM logs WHERE task_id IN (SELECT id FROM doomed)
), parts AS (
    DELETE FROM subtasks WHERE task_id IN (SELECT id FROM doomed)
)
DELETE FROM tasks WHERE id IN (SELECT id FROM doomed) RETURNING id;
