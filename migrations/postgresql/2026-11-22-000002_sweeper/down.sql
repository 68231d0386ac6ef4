DROP TABLE session_revocations;
DROP TABLE sweep_locks;
DROP TABLE sweep_runs;
