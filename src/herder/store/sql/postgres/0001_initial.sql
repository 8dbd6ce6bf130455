-- herder store schema for PostgreSQL, version 1.
--
-- The shape SQLite's migrations 0001-0007 (../) end up with, written at once: a PostgreSQL
-- store starts here, so it has no history to replay. Applied by PostgresStore.migrate() inside
-- one transaction, under an advisory lock, which also records the version in schema_version.
-- Never edit a released migration: add 0002_<name>.sql instead.
--
-- JSON values are TEXT holding the JSON the master wrote (not jsonb: the store never looks
-- inside them, and the master hands over text it has encoded already, which is stored as it is);
-- times are seconds since the epoch in DOUBLE PRECISION, SQLite's REAL; integers are BIGINT,
-- SQLite's 64-bit INTEGER. States are the .value strings of herder.model's enums, checked here
-- so that no bug or bad input can store a state the code cannot read back. Keys are compared
-- byte by byte (COLLATE "C", as SQLite compares text): whatever the database's locale, an id is
-- found by equality and no collation's rules come into it.

-- `seq` orders tasks and is the cursor of list_tasks; an identity never hands out a value twice,
-- even after a delete (SQLite's AUTOINCREMENT). `id` is the user-visible key.
CREATE TABLE tasks (
    seq            BIGINT           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL UNIQUE,
    type           TEXT COLLATE "C" NOT NULL,
    params         TEXT             NOT NULL,
    priority       BIGINT           NOT NULL DEFAULT 0,
    timeout        DOUBLE PRECISION,
    state          TEXT             NOT NULL CHECK (state IN ('pending', 'running',
                                                              'aggregating', 'succeeded',
                                                              'failed', 'cancelled',
                                                              'timed_out')),
    result         TEXT,
    error          TEXT,
    created_at     DOUBLE PRECISION NOT NULL,
    started_at     DOUBLE PRECISION,
    finished_at    DOUBLE PRECISION,
    subtasks_total BIGINT           NOT NULL DEFAULT 0,
    max_retries    BIGINT,
    logs_dropped   BIGINT           NOT NULL DEFAULT 0
);

-- The index of tasks by state holds only the states a task leaves, and the final states that are
-- rare (SQLite's 0007): a task that succeeds leaves it, so it stays as small as the work in
-- flight. Listing the succeeded tasks walks the table by seq instead. list_tasks(type=...) walks
-- (type, seq). Each hands rows out already in seq order.
CREATE INDEX tasks_open_state_seq ON tasks (state, seq)
    WHERE state IN ('pending', 'running', 'aggregating');
CREATE INDEX tasks_failed_state_seq ON tasks (state, seq)
    WHERE state IN ('failed', 'cancelled', 'timed_out');
CREATE INDEX tasks_type_seq ON tasks (type, seq);

-- One row per part of a task, with its result once it has one. The result is recorded once: the
-- update that records it is guarded by the state (queued or running), and a subtask leaves those
-- states once; concurrent updates of one row wait for each other and the second sees the first's
-- state. `result_attempt` is the attempt whose result it is (`attempts` is the highest attempt
-- made, which may be a later one).
CREATE TABLE subtasks (
    task_id        TEXT COLLATE "C" NOT NULL REFERENCES tasks (id),
    idx            BIGINT           NOT NULL,
    part           TEXT             NOT NULL,
    state          TEXT             NOT NULL CHECK (state IN ('queued', 'running', 'succeeded',
                                                              'failed', 'cancelled')),
    attempts       BIGINT           NOT NULL DEFAULT 0,
    worker         TEXT,
    error          TEXT,
    started_at     DOUBLE PRECISION,
    finished_at    DOUBLE PRECISION,
    result         TEXT,
    result_attempt BIGINT,
    PRIMARY KEY (task_id, idx)
);

-- The task journal in the order the master received it: log lines (kind 'log') and final states
-- (kind 'state', message = the state). No foreign key to tasks: a line for a task that is unknown
-- must not make its whole batch fail (the master checks ids before storing).
CREATE TABLE logs (
    seq     BIGINT           GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id TEXT COLLATE "C" NOT NULL,
    ts      DOUBLE PRECISION NOT NULL,
    level   TEXT             NOT NULL,
    message TEXT             NOT NULL,
    subtask BIGINT,
    attempt BIGINT,
    worker  TEXT,
    kind    TEXT             NOT NULL DEFAULT 'log' CHECK (kind IN ('log', 'state'))
);

CREATE INDEX logs_task_seq ON logs (task_id, seq);
