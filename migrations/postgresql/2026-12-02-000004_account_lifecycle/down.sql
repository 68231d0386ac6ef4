ALTER TABLE session_revocations DROP COLUMN epoch;
ALTER TABLE accounts DROP COLUMN disabled_by;
ALTER TABLE accounts DROP COLUMN version;
