-- Subtasks and their results are found by their primary key (task_id, idx) only: stored
-- WITHOUT ROWID, each row lives in the key's B-tree, instead of a rowid table plus a key index
-- (one B-tree written per insert or update instead of two).
CREATE TABLE subtasks_new (
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
) WITHOUT ROWID;
INSERT INTO subtasks_new SELECT task_id, idx, part, state, attempts, worker, error, started_at,
                                finished_at FROM subtasks;

-- No foreign key to subtasks: insert_result inserts only what it selects from subtasks.
CREATE TABLE subtask_results_new (
    task_id     TEXT    NOT NULL,
    idx         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    result      TEXT    NOT NULL,
    recorded_at REAL    NOT NULL,
    PRIMARY KEY (task_id, idx)
) WITHOUT ROWID;
INSERT INTO subtask_results_new SELECT task_id, idx, attempt, result, recorded_at
                                FROM subtask_results;

DROP TABLE subtask_results;
DROP TABLE subtasks;
ALTER TABLE subtasks_new RENAME TO subtasks;
ALTER TABLE subtask_results_new RENAME TO subtask_results;
