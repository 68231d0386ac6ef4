//! The reconciler: a connection's local identities against a complete directory listing, to a
//! plan. Pure (no I/O): the listing is observed entry by entry so memory is bounded by the
//! local identities, and the same code serves dry runs, real sweeps and property tests.

use crate::config::SweepPolicy;
use std::collections::HashMap;

/// A local identity as the sweeper needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIdentity {
    pub subject: String,
    pub account_id: String,
    pub status: LocalStatus,
    /// Unix seconds when it was first seen missing in a successful listing.
    pub missing_since: Option<i64>,
    pub missing_count: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalStatus {
    Active,
    /// Disabled by the sweeper (so it may reactivate it), since the given unix time.
    DisabledByDirectory {
        since: i64,
    },
    /// Disabled by an administrator: the sweeper never reactivates it.
    DisabledOther {
        since: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// Not in the listing at all.
    Gone,
    /// In the listing, but disabled there.
    DisabledInDirectory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Missing, within grace: remember since when and how many sweeps.
    MarkMissing {
        missing_since: i64,
        missing_count: i32,
        why: Absence,
    },
    /// Missing beyond grace: disable now and end its sessions.
    Disable {
        missing_since: i64,
        missing_count: i32,
        why: Absence,
    },
    /// Seen again: forget that it was missing.
    ClearMissing,
    /// Seen again after the sweeper disabled it, and the policy reactivates.
    Reactivate,
    /// Seen again after the sweeper disabled it, but the policy keeps it disabled.
    LeaveDisabled,
    /// Disabled for longer than the retention period.
    Purge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub subject: String,
    pub account_id: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub seen: u64,
    pub actions: Vec<Planned>,
    /// Set when a safety gate stopped the sweep: nothing may be applied.
    pub abort: Option<String>,
}

impl Plan {
    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|p| f(&p.action)).count()
    }

    pub fn disables(&self) -> usize {
        self.count(|a| matches!(a, Action::Disable { .. }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    No,
    Active,
    Inactive,
}

pub struct Reconciler {
    locals: Vec<LocalIdentity>,
    index: HashMap<String, usize>,
    seen: Vec<Seen>,
    listed: u64,
}

impl Reconciler {
    pub fn new(locals: Vec<LocalIdentity>) -> Self {
        let index = locals
            .iter()
            .enumerate()
            .map(|(i, l)| (l.subject.clone(), i))
            .collect();
        let seen = vec![Seen::No; locals.len()];
        Self {
            locals,
            index,
            seen,
            listed: 0,
        }
    }

    /// Records one directory entry. Entries of people who never logged in are only counted.
    pub fn observe(&mut self, subject: &str, active: bool) {
        self.listed += 1;
        if let Some(&i) = self.index.get(subject) {
            // Listed twice (e.g. two entries carrying the same subject): active wins.
            if self.seen[i] != Seen::Active {
                self.seen[i] = if active { Seen::Active } else { Seen::Inactive };
            }
        }
    }

    /// The plan after a complete, successful listing.
    pub fn finish(self, policy: &SweepPolicy, now: i64, force: bool) -> Plan {
        let mut actions = Vec::new();
        let mut active_locals = 0u64;
        for (l, seen) in self.locals.iter().zip(&self.seen) {
            let push = |actions: &mut Vec<Planned>, action| {
                actions.push(Planned {
                    subject: l.subject.clone(),
                    account_id: l.account_id.clone(),
                    action,
                })
            };
            if l.status == LocalStatus::Active {
                active_locals += 1;
            }
            match (seen, l.status) {
                (Seen::Active, LocalStatus::Active) => {
                    if l.missing_since.is_some() || l.missing_count > 0 {
                        push(&mut actions, Action::ClearMissing);
                    }
                }
                (Seen::Active, LocalStatus::DisabledByDirectory { .. }) => {
                    push(
                        &mut actions,
                        if policy.reactivate {
                            Action::Reactivate
                        } else {
                            Action::LeaveDisabled
                        },
                    );
                }
                (Seen::No | Seen::Inactive, LocalStatus::Active) => {
                    let why = if *seen == Seen::No {
                        Absence::Gone
                    } else {
                        Absence::DisabledInDirectory
                    };
                    let missing_since = l.missing_since.unwrap_or(now);
                    let missing_count = l.missing_count.saturating_add(1);
                    let grace_over = missing_count as u32 >= policy.grace_sweeps
                        && now.saturating_sub(missing_since)
                            >= policy.grace_period.as_secs() as i64;
                    let action = if grace_over {
                        Action::Disable {
                            missing_since,
                            missing_count,
                            why,
                        }
                    } else {
                        Action::MarkMissing {
                            missing_since,
                            missing_count,
                            why,
                        }
                    };
                    push(&mut actions, action);
                }
                (
                    _,
                    LocalStatus::DisabledByDirectory { since }
                    | LocalStatus::DisabledOther { since },
                ) => {
                    if policy
                        .retention
                        .is_some_and(|r| now.saturating_sub(since) >= r.as_secs() as i64)
                    {
                        push(&mut actions, Action::Purge);
                    }
                }
            }
        }
        let mut plan = Plan {
            seen: self.listed,
            actions,
            abort: None,
        };
        plan.abort = gate(&plan, active_locals, policy, force);
        plan
    }
}

/// The safety gates; `Some(reason)` stops the sweep before any change.
fn gate(plan: &Plan, active_locals: u64, policy: &SweepPolicy, force: bool) -> Option<String> {
    if plan.seen == 0 && !plan.actions.is_empty() {
        // An empty answer is far more likely an outage, a wrong base DN or filter, or a
        // permission change than everyone leaving at once. Never act on it, not even with force.
        return Some(
            "the directory listed nobody; an empty listing is never taken to mean everyone left"
                .into(),
        );
    }
    let disables = plan.disables() as u64;
    if force || disables == 0 {
        return None;
    }
    let allowed = (policy.max_disable_fraction * active_locals as f64).ceil() as u64;
    if disables > allowed {
        return Some(format!(
            "the sweep would disable {disables} of {active_locals} active accounts, more than max_disable_fraction = {} allows ({allowed}); rerun with --force if this is intended",
            policy.max_disable_fraction
        ));
    }
    if let Some(max) = policy.max_disable_count
        && disables > max
    {
        return Some(format!(
            "the sweep would disable {disables} accounts, more than max_disable_count = {max}; rerun with --force if this is intended"
        ));
    }
    None
}

#[cfg(test)]
mod tests;
