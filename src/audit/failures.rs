//! Refused logins, aggregated: a stranger can send as many junk requests as they like, and one
//! audit row each would let them grow the trail (and its database) without bound.
//!
//! The first failure of each (reason, connection, minute) is written in full at once, so an
//! investigation sees its request id and message and tests see it immediately; the rest of that
//! minute are counted in memory and written as one `refusals.repeated` event with the count
//! when the minute is over. The trail stays append-only. Memory is bounded: reasons are a fixed
//! set, connections are the configured ones (a name from the URL that is not configured counts
//! as none), and minutes are drained as they end; past a cap, failures fold into one overflow
//! bucket rather than growing the map.

use super::{Event, Outcome};
use crate::db::{Db, DbError};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The action of the counted events.
pub const REPEATED: &str = "refusals.repeated";

/// Buckets kept at once; a bound that the reason set times the connections never reaches.
const MAX_BUCKETS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The event the first refusal was written as (`login.failed`, `logout.refused`).
    action: &'static str,
    reason: &'static str,
    connection: Option<String>,
    /// Unix minute (seconds / 60).
    minute: i64,
}

#[derive(Default)]
pub struct FailureAggregator {
    /// Failures after the first, per bucket.
    repeats: Mutex<HashMap<Key, u64>>,
}

impl FailureAggregator {
    /// Notes one failure at `now` (unix seconds); true when it is the first of its bucket and
    /// should be written in full now. `connection` must already be a configured name or `None`.
    pub fn note(
        &self,
        action: &'static str,
        reason: &'static str,
        connection: Option<&str>,
        now: i64,
    ) -> bool {
        let mut map = self.repeats.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = Key {
            action,
            reason,
            connection: connection.map(str::to_string),
            minute: now.div_euclid(60),
        };
        if !map.contains_key(&key) && map.len() >= MAX_BUCKETS {
            key = Key {
                action,
                reason: "overflow",
                connection: None,
                minute: key.minute,
            };
        }
        match map.get_mut(&key) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                map.insert(key, 0);
                true
            }
        }
    }

    /// Takes the buckets of minutes before the one `now` falls in.
    fn drain_finished(&self, now: i64) -> Vec<(Key, u64)> {
        let current = now.div_euclid(60);
        let mut map = self.repeats.lock().unwrap_or_else(|p| p.into_inner());
        let done: Vec<Key> = map.keys().filter(|k| k.minute < current).cloned().collect();
        done.into_iter()
            .filter_map(|k| map.remove(&k).map(|n| (k, n)))
            .collect()
    }

    /// Writes one `refusals.repeated` event per finished bucket that saw repeats; returns
    /// how many were written. On a database error the counts are put back for the next flush.
    pub async fn flush_once(&self, db: &Db, now: i64) -> Result<usize, DbError> {
        let finished: Vec<(Key, u64)> = self
            .drain_finished(now)
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
        if finished.is_empty() {
            return Ok(0);
        }
        let events: Vec<Event> = finished
            .iter()
            .map(|(k, n)| {
                let mut e = Event::new(REPEATED, Outcome::Failure)
                    .actor("anonymous")
                    .details(json!({
                        "of": k.action,
                        "reason": k.reason,
                        "count": n,
                        "minute_start": k.minute * 60,
                    }));
                if let Some(c) = &k.connection {
                    e = e.connection(c.clone());
                }
                e
            })
            .collect();
        let written = events.len();
        let result = db
            .run(move |c| {
                c.write_transaction(|c| {
                    for e in events {
                        super::record(c, e)?;
                    }
                    Ok::<_, DbError>(())
                })
            })
            .await;
        if let Err(e) = result {
            let mut map = self.repeats.lock().unwrap_or_else(|p| p.into_inner());
            for (k, n) in finished {
                *map.entry(k).or_insert(0) += n;
            }
            return Err(e);
        }
        Ok(written)
    }

    /// Flushes finished minutes every few seconds while the server runs.
    pub async fn flush_until_stopped(self: std::sync::Arc<Self>, db: Db) {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            if let Err(e) = self.flush_once(&db, crate::session::unix_now()).await {
                tracing::warn!(error = %e, "could not write the aggregated login failures; kept for the next try");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failure_of_each_bucket_is_written_and_the_rest_counted() {
        let a = FailureAggregator::default();
        // The start of a minute.
        let t = 60 * 28_333_334;
        assert!(a.note("login.failed", "saml_malformed", Some("corp"), t));
        for _ in 0..999 {
            assert!(!a.note("login.failed", "saml_malformed", Some("corp"), t + 1));
        }
        assert!(
            a.note("login.failed", "saml_doctype", Some("corp"), t),
            "another reason"
        );
        assert!(
            a.note("login.failed", "saml_malformed", None, t),
            "another connection"
        );
        assert!(
            a.note("login.failed", "saml_malformed", Some("corp"), t + 60),
            "the next minute"
        );
        assert!(
            a.drain_finished(t + 59).is_empty(),
            "the minute is not over"
        );
        let drained = a.drain_finished(t + 120);
        let repeats: u64 = drained.iter().map(|(_, n)| n).sum();
        assert_eq!(repeats, 999);
        assert!(a.repeats.lock().unwrap().is_empty());
    }

    #[test]
    fn buckets_are_bounded_whatever_the_input() {
        let a = FailureAggregator::default();
        static REASONS: [&str; 2] = ["a", "b"];
        for i in 0..(MAX_BUCKETS * 3) {
            let conn = format!("c{i}");
            a.note("login.failed", REASONS[i % 2], Some(&conn), 60);
        }
        assert!(a.repeats.lock().unwrap().len() <= MAX_BUCKETS + 1);
    }
}
