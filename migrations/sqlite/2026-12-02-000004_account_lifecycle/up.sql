-- The lifecycle version: every status transition is a compare-and-set on (status, version)
-- and bumps it, so a writer that read an older state changes nothing.
ALTER TABLE accounts ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
-- Who disabled the account, typed: 'directory' (the sweeper), 'admin', 'idp'. Before this
-- column it was read from a reason prefix that an admin could type too.
ALTER TABLE accounts ADD COLUMN disabled_by TEXT;
-- Backfill: a disabled account is the directory's when the last 'account.disabled' event about
-- it was the sweeper's (its reason prefix alone is ambiguous); otherwise an administrator's.
UPDATE accounts SET disabled_by = CASE
    WHEN (SELECT e.actor FROM audit_events e
          WHERE e.account_id = accounts.id AND e.action = 'account.disabled'
          ORDER BY e.id DESC LIMIT 1) = 'sweeper' THEN 'directory'
    ELSE 'admin' END
WHERE status = 'disabled';
-- The account's lifecycle version after the disable or purge that queued the revocation: a
-- session made before it is refused, whenever and wherever it is checked.
ALTER TABLE session_revocations ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
