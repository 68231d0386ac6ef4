-- The revocation-log follower re-reads a time window of entries every second.
CREATE INDEX session_revocations_at ON session_revocations (at);
