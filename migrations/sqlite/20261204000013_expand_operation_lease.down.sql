DROP TABLE IF EXISTS operation_lease;
