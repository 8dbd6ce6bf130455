-- Version 2: the logs table becomes the task journal.
--
-- Besides log lines (kind 'log') it holds state changes (kind 'state', message = the new state),
-- so that an event stream can be resumed from its last event id (`seq`) and miss nothing still
-- stored. Log lines are bounded per task; tasks.logs_dropped counts what was trimmed.
ALTER TABLE logs ADD COLUMN kind TEXT NOT NULL DEFAULT 'log' CHECK (kind IN ('log', 'state'));
ALTER TABLE tasks ADD COLUMN logs_dropped INTEGER NOT NULL DEFAULT 0;
CREATE INDEX logs_kind_task_seq ON logs (kind, task_id, seq);
