DROP TABLE flag_audit;
DROP TABLE flag_state;
