-- How each run collected: `incremental` from the committed cursors, or
-- `full_refresh`, reading everything, after which the host deletes the
-- records the run no longer returned (docs/storage.md, reconciliation). A
-- scheduler finds a connection's last full refresh here.
ALTER TABLE runs ADD COLUMN collection_mode TEXT NOT NULL DEFAULT 'incremental'
    CHECK (collection_mode IN ('incremental', 'full_refresh'));
