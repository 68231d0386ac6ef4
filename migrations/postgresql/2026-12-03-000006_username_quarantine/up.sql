-- Usernames freed by a rename or a purge, held back from anyone but the account that had them
-- until `held_until`. Only a keyed hash of the name is stored (HMAC-SHA256, lowercased name),
-- never the name. No foreign key: a deleted account's holds outlive it.
CREATE TABLE username_quarantine (
    name_hash  TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL,
    held_until TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX username_quarantine_held_until ON username_quarantine (held_until);

-- Keys the bridge generated itself when none is configured (today: `username_hash`, when
-- `accounts.username_hash_key` is not set). A dump of this table and of the holds together
-- lets anyone test guessed names: configure the key instead.
CREATE TABLE generated_keys (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
