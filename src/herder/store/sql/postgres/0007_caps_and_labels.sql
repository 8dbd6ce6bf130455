-- What a submission asked of the scheduling core beyond its type: at most `max_parallel` of its
-- subtasks running at once (NULL: no cap), and the worker labels its subtasks need (a JSON
-- array of strings; NULL: none beyond its type's). Kept with the task so that a restarted master
-- schedules it as it was submitted.
ALTER TABLE tasks ADD COLUMN max_parallel BIGINT;
ALTER TABLE tasks ADD COLUMN labels TEXT;
