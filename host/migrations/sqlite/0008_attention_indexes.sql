-- A serving host looks for answers and cancel requests of its runs four
-- times a second. With tens of thousands of runs parked on a question, that
-- look must cost what is waiting, not what is running: these partial
-- indexes hold only answered questions not yet taken and cancel requests of
-- running runs.
CREATE INDEX interactions_answered ON interactions (run_id) WHERE status = 'pending' AND answer IS NOT NULL;
CREATE INDEX runs_cancel_requested ON runs (runner) WHERE status = 'running' AND cancel_requested_at IS NOT NULL;
