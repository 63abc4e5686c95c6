-- Any host sharing the database answers a run's question and cancels a run:
-- the answer waits here, sealed, until the run's own host takes it (and is
-- erased then); a cancel request waits on the run's row.
ALTER TABLE interactions ADD COLUMN stream TEXT;
ALTER TABLE interactions ADD COLUMN timeout_seconds BIGINT;
ALTER TABLE interactions ADD COLUMN answered_at BIGINT;
ALTER TABLE interactions ADD COLUMN answer_status TEXT;
ALTER TABLE interactions ADD COLUMN answer BLOB;
CREATE INDEX interactions_pending ON interactions (status, run_id);
ALTER TABLE runs ADD COLUMN cancel_requested_at BIGINT;
