DROP TABLE backfill_quarantine;
DROP TABLE backfill_checkpoint;
