-- One row per sweep of a connection's directory, whatever its outcome.
CREATE TABLE sweep_runs (
    id            BIGSERIAL PRIMARY KEY,
    connection    TEXT NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('applied', 'dry-run', 'aborted')),
    reason        TEXT,
    seen          BIGINT NOT NULL DEFAULT 0,
    missing       BIGINT NOT NULL DEFAULT 0,
    disabled      BIGINT NOT NULL DEFAULT 0,
    reactivated   BIGINT NOT NULL DEFAULT 0,
    purged        BIGINT NOT NULL DEFAULT 0,
    -- Sum of (disabled_at - first seen missing) over this run's disables, for the metric.
    deprovision_seconds_sum BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sweep_runs_connection ON sweep_runs (connection, id);

-- A lease per connection: at most one sweeper at a time across processes and replicas. A
-- killed sweeper's lease expires; the next run takes over.
CREATE TABLE sweep_locks (
    connection TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);

-- Accounts whose sessions must end everywhere: processes that keep sessions in memory poll it.
CREATE TABLE session_revocations (
    id         BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL,
    at         TIMESTAMP NOT NULL
);
