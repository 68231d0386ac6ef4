DROP INDEX session_revocations_at;
