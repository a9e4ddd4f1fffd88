DROP TABLE verify_runs;
