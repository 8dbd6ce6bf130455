-- Delayed tasks: a task may wait for a time (`not_before`, seconds since the epoch) in the new
-- state 'scheduled'. SQLite cannot alter a CHECK, so tasks and subtasks are rebuilt as in 0005,
-- keys, ids and rows as they were; 'scheduled' joins the partial index of open states, which the
-- queries of unfinished tasks walk.

CREATE TABLE tasks_new (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    params         TEXT    NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    timeout        REAL,
    state          TEXT    NOT NULL CHECK (state = 'pending' OR state = 'running'
                                           OR state = 'aggregating' OR state = 'succeeded'
                                           OR state = 'failed' OR state = 'cancelled'
                                           OR state = 'timed_out' OR state = 'scheduled'),
    result         TEXT,
    error          TEXT,
    created_at     REAL    NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    subtasks_total INTEGER NOT NULL DEFAULT 0,
    max_retries    INTEGER,
    logs_dropped   INTEGER NOT NULL DEFAULT 0,
    not_before     REAL
);
INSERT INTO tasks_new (seq, id, type, params, priority, timeout, state, result, error,
                       created_at, started_at, finished_at, subtasks_total, max_retries,
                       logs_dropped)
SELECT seq, id, type, params, priority, timeout, state, result, error, created_at, started_at,
       finished_at, subtasks_total, max_retries, logs_dropped
FROM tasks;

-- AUTOINCREMENT goes on from the old table's high-water mark (see 0005).
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'tasks')
WHERE name = 'tasks_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'tasks_new', seq FROM sqlite_sequence
WHERE name = 'tasks' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks_new');

CREATE TABLE subtasks_new (
    task_id        TEXT    NOT NULL REFERENCES tasks_new (id),
    idx            INTEGER NOT NULL,
    part           TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state = 'queued' OR state = 'running'
                                           OR state = 'succeeded' OR state = 'failed'
                                           OR state = 'cancelled'),
    attempts       INTEGER NOT NULL DEFAULT 0,
    worker         TEXT,
    error          TEXT,
    started_at     REAL,
    finished_at    REAL,
    result         TEXT,
    result_attempt INTEGER,
    worker_uid     TEXT,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;
INSERT INTO subtasks_new (task_id, idx, part, state, attempts, worker, error, started_at,
                          finished_at, result, result_attempt, worker_uid)
SELECT task_id, idx, part, state, attempts, worker, error, started_at, finished_at, result,
       result_attempt, worker_uid
FROM subtasks;

DROP TABLE subtasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
ALTER TABLE subtasks_new RENAME TO subtasks;
CREATE INDEX tasks_type_seq ON tasks (type, seq);
CREATE INDEX tasks_open_state_seq ON tasks (state, seq)
    WHERE state = 'pending' OR state = 'running' OR state = 'aggregating' OR state = 'scheduled';
CREATE INDEX tasks_failed_state_seq ON tasks (state, seq)
    WHERE state = 'failed' OR state = 'cancelled' OR state = 'timed_out';
