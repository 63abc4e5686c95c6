-- Serving hosts that use this database, and when each last said it is
-- alive: what may not happen while one serves (a vault key rotation) is
-- refused, and a host that died is told apart from a live one.
CREATE TABLE hosts (
    runner       TEXT PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
