-- Every query of the journal (logs table) filters by task_id and seq first, which
-- logs_task_seq serves; the (kind, task_id, seq) index only saved reading a task's few state
-- rows, and cost one more B-tree insert per journal row (four per task).
DROP INDEX logs_kind_task_seq;
