-- Which process runs each run, and when it last said so: several hosts (and
-- CLI commands) share one database, and only a run whose process is gone may
-- be marked interrupted.
ALTER TABLE runs ADD COLUMN runner TEXT;
ALTER TABLE runs ADD COLUMN heartbeat_at BIGINT;

-- Runs left running by a version without runner identity cannot be vouched for.
UPDATE runs SET status = 'failed', failure_reason = 'host_interrupted',
  failure_message = 'the host stopped while the run was in progress'
  WHERE status = 'running';

-- At most one run of a connection in progress, across every host.
CREATE UNIQUE INDEX one_running_run_per_connection ON runs (connection_id) WHERE status = 'running';
