-- Setup lifecycle, revoke/delete, audit trail, record time filter.

ALTER TABLE connections ADD COLUMN revoked_at BIGINT;
ALTER TABLE connections ADD COLUMN activated_at BIGINT;

-- The record's own time (the stream's consent_time_field, else emitted_at),
-- for filtering reads by time.
ALTER TABLE records ADD COLUMN record_time TEXT;
UPDATE records SET record_time = emitted_at;
CREATE INDEX records_by_time ON records (connection_id, stream, record_time);

-- Every owner mutation. Never a secret: only ids, kinds, outcomes, codes.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            BIGINT NOT NULL,
    action        TEXT NOT NULL,
    connection_id TEXT,
    run_id        TEXT,
    outcome       TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_connection ON audit_events (connection_id, seq);
