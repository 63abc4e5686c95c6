-- pdpp-host schema, SQLite flavour. Times are Unix milliseconds; JSON is TEXT.

CREATE TABLE connectors (
    connector_id  TEXT PRIMARY KEY,
    version       TEXT NOT NULL,
    manifest      TEXT NOT NULL,
    plugin_sha256 TEXT,
    availability  TEXT NOT NULL DEFAULT 'available'
                  CHECK (availability IN ('available', 'unavailable', 'removed')),
    updated_at    BIGINT NOT NULL
);

CREATE TABLE connections (
    connection_id    TEXT PRIMARY KEY,
    connector_id     TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('draft', 'active', 'paused', 'revoked')),
    display_name     TEXT,
    account_identity TEXT,
    binding_metadata TEXT NOT NULL DEFAULT '{}',
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX connections_by_connector ON connections (connector_id);

CREATE TABLE credentials (
    connection_id  TEXT PRIMARY KEY REFERENCES connections (connection_id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    field_names    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked', 'rejected')),
    format_version BIGINT NOT NULL,
    key_id         TEXT NOT NULL,
    nonce          BLOB NOT NULL,
    ciphertext     BLOB NOT NULL,
    fingerprint    TEXT NOT NULL,
    captured_at    BIGINT NOT NULL,
    rotated_at     BIGINT
);

CREATE TABLE runs (
    run_id          TEXT PRIMARY KEY,
    connection_id   TEXT NOT NULL,
    connector_id    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    run_trigger     TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT,
    records_emitted BIGINT NOT NULL DEFAULT 0,
    records_written BIGINT NOT NULL DEFAULT 0,
    failure_reason  TEXT,
    failure_message TEXT,
    resource_report TEXT
);
CREATE INDEX runs_by_connection ON runs (connection_id, started_at);

CREATE TABLE run_events (
    run_id TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    at     BIGINT NOT NULL,
    kind   TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE records (
    connection_id TEXT NOT NULL,
    stream        TEXT NOT NULL,
    record_key    TEXT NOT NULL,
    data          TEXT NOT NULL,
    emitted_at    TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    written_at    BIGINT NOT NULL,
    PRIMARY KEY (connection_id, stream, record_key)
);

CREATE TABLE stream_state (
    connection_id TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    stream        TEXT NOT NULL,
    cursor        TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    committed_at  BIGINT NOT NULL,
    PRIMARY KEY (connection_id, namespace, stream)
);

CREATE TABLE interactions (
    interaction_id TEXT PRIMARY KEY,
    run_id         TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    request_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    message        TEXT NOT NULL,
    schema         TEXT,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'cancelled', 'timed_out')),
    created_at     BIGINT NOT NULL,
    resolved_at    BIGINT
);
CREATE INDEX interactions_by_run ON interactions (run_id);
