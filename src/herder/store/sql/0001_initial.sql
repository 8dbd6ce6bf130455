-- herder store schema, version 1 (SQLite dialect).
--
-- Applied once by SqliteStore.migrate() inside one transaction, which also records the version in
-- schema_version. Never edit a released migration: add 0002_<name>.sql instead.
--
-- JSON values are stored as TEXT written by json.dumps; times are REAL seconds since the epoch;
-- states are the .value strings of herder.model's enums, checked here so that no bug or bad input
-- can store a state the code cannot read back.

-- `seq` is the rowid (AUTOINCREMENT: never reused, even after a delete), so ordering and
-- pagination cursors cost nothing. `id` is the user-visible key: NOT NULL UNIQUE gives the same
-- index and the same guarantee as `id TEXT PRIMARY KEY` on a rowid table would.
CREATE TABLE tasks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT    NOT NULL UNIQUE,
    type           TEXT    NOT NULL,
    params         TEXT    NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    timeout        REAL,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'aggregating',
                                                     'succeeded', 'failed', 'cancelled',
                                                     'timed_out')),
    result         TEXT,
    error          TEXT,
    created_at     REAL    NOT NULL,
    started_at     REAL,
    finished_at    REAL,
    subtasks_total INTEGER NOT NULL DEFAULT 0,
    max_retries    INTEGER
);

-- list_tasks(state=...), count_unfinished and unfinished_tasks walk (state, seq);
-- list_tasks(type=...) walks (type, seq). Both hand rows out already in seq order.
CREATE INDEX tasks_state_seq ON tasks (state, seq);
CREATE INDEX tasks_type_seq ON tasks (type, seq);

-- One row per part of a task. The result is not here but in subtask_results, its one home.
CREATE TABLE subtasks (
    task_id     TEXT    NOT NULL REFERENCES tasks (id),
    idx         INTEGER NOT NULL,
    part        TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed',
                                                  'cancelled')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    worker      TEXT,
    error       TEXT,
    started_at  REAL,
    finished_at REAL,
    PRIMARY KEY (task_id, idx)
);

-- "A result is recorded exactly once" is this primary key: a second insert for the same subtask
-- conflicts, whatever the code above it does.
CREATE TABLE subtask_results (
    task_id     TEXT    NOT NULL,
    idx         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    result      TEXT    NOT NULL,
    recorded_at REAL    NOT NULL,
    PRIMARY KEY (task_id, idx),
    FOREIGN KEY (task_id, idx) REFERENCES subtasks (task_id, idx)
);

-- Log lines in the order the master received them. No foreign key to tasks: a line for a task
-- that is unknown must not make its whole batch fail (the master checks ids before storing).
CREATE TABLE logs (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT    NOT NULL,
    ts      REAL    NOT NULL,
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL,
    subtask INTEGER,
    attempt INTEGER,
    worker  TEXT
);

CREATE INDEX logs_task_seq ON logs (task_id, seq);
