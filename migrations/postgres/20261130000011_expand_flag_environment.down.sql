-- Bookkeeping only: without it the next start records the environment afresh.
DROP TABLE IF EXISTS flag_environment;
