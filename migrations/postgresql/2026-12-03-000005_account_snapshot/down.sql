ALTER TABLE session_revocations DROP COLUMN revoke;
ALTER TABLE accounts DROP COLUMN revision;
