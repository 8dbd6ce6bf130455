-- The uid of the worker an attempt was given to (as the master passes it: a digest, so that a
-- reader of the store cannot pose as the worker), stored with the attempt's start. After a
-- master restart only a worker of that uid may claim the attempt back: its name is no proof, any
-- worker may take any name. Rows written before have none, and nobody may claim those back.
ALTER TABLE subtasks ADD COLUMN worker_uid TEXT;
