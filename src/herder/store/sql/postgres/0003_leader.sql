-- Leadership of the masters sharing this database (store/leader.py): one row per role ('master'),
-- held by one master at a time until `expires_at` (the database's clock, never a master's). Every
-- take-over raises `term`; each write transaction of a master checks its term against this row
-- first (queries.sql `fence`), so a deposed master's late writes are refused by the store.
CREATE TABLE herder_leader (
    name       TEXT PRIMARY KEY,
    term       BIGINT NOT NULL,
    holder     TEXT NOT NULL,
    url        TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
