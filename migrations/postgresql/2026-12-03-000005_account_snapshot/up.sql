-- The snapshot revision: bumped by every write that changes what a session shows or allows
-- (a login's profile and claim roles, a grant or its removal, a status transition), under the
-- account's row lock. The account snapshot in the session store is replaced only by one of a
-- higher revision, so a late delivery never overwrites a newer one.
ALTER TABLE accounts ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
-- The log is now an outbox of account changes: every entry delivers the account's snapshot to
-- the session store; `revoke` entries also end the sessions older than `epoch`. Rows written
-- by earlier versions were all revocations.
ALTER TABLE session_revocations ADD COLUMN revoke BOOLEAN NOT NULL DEFAULT TRUE;
