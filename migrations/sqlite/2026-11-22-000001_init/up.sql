-- Accounts hold mapped attributes only: nothing the claim mapping does not name is stored.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY NOT NULL,
    username        TEXT NOT NULL UNIQUE,
    email           TEXT,
    display_name    TEXT,
    attributes      TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason TEXT,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL,
    last_login_at   TIMESTAMP,
    disabled_at     TIMESTAMP
);

-- Exactly one account per (connection, subject): the primary key is the guarantee.
CREATE TABLE identities (
    connection             TEXT NOT NULL,
    subject                TEXT NOT NULL,
    account_id             TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    created_at             TIMESTAMP NOT NULL,
    last_login_at          TIMESTAMP,
    last_seen_in_directory TIMESTAMP,
    missing_since          TIMESTAMP,
    missing_count          INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (connection, subject)
);
CREATE INDEX identities_account_id ON identities (account_id);

CREATE TABLE account_roles (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    source     TEXT NOT NULL CHECK (source IN ('claims', 'manual', 'temporary')),
    granted_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    PRIMARY KEY (account_id, role, source)
);

-- Append-only; no foreign key so that the trail outlives the accounts it describes.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at         TIMESTAMP NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    account_id TEXT,
    connection TEXT,
    details    TEXT NOT NULL DEFAULT '{}',
    request_id TEXT
);
CREATE INDEX audit_events_account_id ON audit_events (account_id);
CREATE INDEX audit_events_at ON audit_events (at);
