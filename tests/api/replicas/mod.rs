//! Three replicas, proven, and the faults they must survive (issue 9, items 5 and 6): real
//! `jitbridge serve` processes behind a real nginx, on PostgreSQL and Redis, with real IdPs;
//! the fault tests stop and restart private server processes (never the shared ones).
//!
//! They run once, in their own phase of `scripts/test`, when `JB_TEST_REPLICAS=1`; otherwise
//! each test returns at once (they start many processes and do not depend on the storage
//! combination of the run).

mod bench;
mod cluster;
mod faults;
mod logins;
mod ops;
mod servers;

/// Whether to skip: the replica tests run only with `JB_TEST_REPLICAS=1`.
pub fn skip() -> bool {
    let run = std::env::var("JB_TEST_REPLICAS").is_ok_and(|v| v == "1");
    if !run {
        eprintln!("skipped: set JB_TEST_REPLICAS=1 to run the replica and fault tests");
    }
    !run
}
