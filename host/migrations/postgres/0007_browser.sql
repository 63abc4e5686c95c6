-- Browser-backed connections (seed 004). Each connection's login material
-- (cookies and the like, packed by the browser engine) is kept here between
-- runs, sealed with the vault key and bound to the connection id; an
-- ephemeral connection never keeps any. A question asked while the run's
-- browser was open carries a sealed screenshot for the owner, erased when
-- the question is resolved.
CREATE TABLE browser_profiles (
    connection_id TEXT PRIMARY KEY REFERENCES connections (connection_id) ON DELETE CASCADE,
    sealed        BYTEA NOT NULL,
    bytes         BIGINT NOT NULL,
    account       TEXT,
    run_id        TEXT NOT NULL,
    updated_at    BIGINT NOT NULL
);
ALTER TABLE connections ADD COLUMN browser_session TEXT NOT NULL DEFAULT 'persistent'
    CHECK (browser_session IN ('persistent', 'ephemeral'));
ALTER TABLE interactions ADD COLUMN screenshot BYTEA;
