DROP TABLE audit_events;
DROP TABLE account_roles;
DROP TABLE identities;
DROP TABLE accounts;
