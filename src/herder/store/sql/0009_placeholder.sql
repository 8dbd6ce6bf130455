-- Stands for the delayed tasks' migration 0009 until both are merged; drop it then.
SELECT 1;
