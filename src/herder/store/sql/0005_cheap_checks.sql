-- The state checks of tasks and subtasks, written as comparisons joined by OR instead of
-- `state IN (...)`. SQLite evaluates an IN list of more than two constants by building a
-- temporary B-tree of the list once per execution of the statement, and a CHECK is evaluated on
-- every insert and on every update of the column: a large share of the cost of writing a row
-- (docs/decisions.md). The checks refuse the same values as before. SQLite cannot alter a
-- CHECK, so both tables are rebuilt, keys, ids and rows as they were.

-- The new subtasks table references the new tasks table, so that no row points at nothing
-- while the old ones are dropped (the check of foreign keys is on); the rename of tasks_new
-- renames it in that reference too.
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
                                           OR state = 'timed_out'),
    result         TEXT,
    error          TEXT,
    created_at     REAL    NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    subtasks_total INTEGER NOT NULL DEFAULT 0,
    max_retries    INTEGER,
    logs_dropped   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tasks_new (seq, id, type, params, priority, timeout, state, result, error,
                       created_at, started_at, finished_at, subtasks_total, max_retries,
                       logs_dropped)
SELECT seq, id, type, params, priority, timeout, state, result, error, created_at, started_at,
       finished_at, subtasks_total, max_retries, logs_dropped
FROM tasks;

-- AUTOINCREMENT never reuses a seq, even one whose row is gone: the new table goes on from the
-- old one's high-water mark, not from its largest remaining row.
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'tasks')
WHERE name = 'tasks_new' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'tasks_new', seq FROM sqlite_sequence
WHERE name = 'tasks' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'tasks_new');

CREATE TABLE subtasks_new (
    task_id     TEXT    NOT NULL REFERENCES tasks_new (id),
    idx         INTEGER NOT NULL,
    part        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state = 'queued' OR state = 'running'
                                        OR state = 'succeeded' OR state = 'failed'
                                        OR state = 'cancelled'),
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    error       TEXT,
    started_at  REAL,
    finished_at REAL,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;
INSERT INTO subtasks_new SELECT task_id, idx, part, state, attempts, worker, error, started_at,
                                finished_at FROM subtasks;

DROP TABLE subtasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_state_seq ON tasks (state, seq);
CREATE INDEX tasks_type_seq ON tasks (type, seq);
ALTER TABLE subtasks_new RENAME TO subtasks;
