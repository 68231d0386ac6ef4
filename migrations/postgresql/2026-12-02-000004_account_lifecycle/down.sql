ALTER TABLE accounts DROP COLUMN disabled_by;
ALTER TABLE accounts DROP COLUMN version;
