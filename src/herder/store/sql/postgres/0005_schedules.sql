-- Schedules, and the tasks they fire.
--
-- A schedule's definition, and where its firings are: `last_target_at` is the time of the latest
-- firing made or skipped (the next one is counted from it), `last_task_id` / `last_run_at` the
-- task that firing made and when. `skipped` counts the firings that `overlap = 'skip'` let go.
CREATE TABLE schedules (
    id             TEXT COLLATE "C" PRIMARY KEY,
    type           TEXT    NOT NULL,
    params         TEXT    NOT NULL,
    cron           TEXT,
    every          TEXT,
    timezone       TEXT    NOT NULL,
    priority       BIGINT           NOT NULL DEFAULT 0,
    timeout        DOUBLE PRECISION,
    overlap        TEXT    NOT NULL CHECK (overlap IN ('skip', 'allow')),
    created_at     DOUBLE PRECISION    NOT NULL,
    last_target_at DOUBLE PRECISION,
    last_run_at    DOUBLE PRECISION,
    last_task_id   TEXT,
    skipped        BIGINT           NOT NULL DEFAULT 0,
    CHECK ((cron IS NULL) <> (every IS NULL))
);

-- A task fired by a schedule names it, and the firing's time. "One task per firing" is this
-- unique index: a second insert for the same (schedule, fired_at) conflicts, whoever makes it
-- (a restarted master, a second one, a retry). Tasks not fired have NULLs, which never conflict.
ALTER TABLE tasks ADD COLUMN schedule TEXT COLLATE "C";
ALTER TABLE tasks ADD COLUMN fired_at DOUBLE PRECISION;
CREATE UNIQUE INDEX tasks_schedule_firing ON tasks (schedule, fired_at);
-- `GET /tasks?schedule=` walks it newest first
CREATE INDEX tasks_schedule_seq ON tasks (schedule, seq) WHERE schedule IS NOT NULL;
