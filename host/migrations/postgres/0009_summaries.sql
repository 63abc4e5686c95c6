-- Owner reads that stay flat as history grows. Setup status reads only the
-- timeline kinds it projects (run end, browser session, bootstrap verdict)
-- of at most three runs; the connection list pages in creation order; the
-- record count of each stream is kept in the same transaction as the
-- records it counts, instead of counting them on every read.
CREATE INDEX run_events_by_kind ON run_events (run_id, kind, seq);
CREATE INDEX connections_by_creation ON connections (created_at, connection_id);
CREATE TABLE stream_counts (
    connection_id TEXT NOT NULL REFERENCES connections (connection_id) ON DELETE CASCADE,
    stream        TEXT NOT NULL,
    records       BIGINT NOT NULL,
    PRIMARY KEY (connection_id, stream)
);
INSERT INTO stream_counts (connection_id, stream, records)
    SELECT connection_id, stream, COUNT(*) FROM records GROUP BY connection_id, stream;
