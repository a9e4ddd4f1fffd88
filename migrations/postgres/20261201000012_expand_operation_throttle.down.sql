DROP TABLE IF EXISTS operation_throttle;
