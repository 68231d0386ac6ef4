//! The reconciler: a connection's local identities against a directory listing, to a plan.
//! Pure (no I/O): the listing is observed entry by entry so memory is bounded by the local
//! identities, and the same code serves dry runs, real sweeps and property tests.
//!
//! It also holds the safety gates, so that no caller can skip one: an incomplete listing plans
//! nothing; an empty one, one with too many entries without a subject, or one that would mark
//! missing or disable too many accounts stops the sweep; too many purges are held back.

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
    /// Disabled by the sweeper for longer than the retention period, and still not listed as
    /// active.
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
    /// Listed entries without the subject attribute (within the tolerance, or the plan aborts).
    pub without_subject: u64,
    pub actions: Vec<Planned>,
    /// Set when a safety gate stopped the sweep: nothing may be applied.
    pub abort: Option<String>,
    /// Set when purges were left out of `actions` because there were too many.
    pub purges_held: Option<String>,
}

/// How the listing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Complete,
    /// It failed or could not be shown to be whole: nobody may be taken for gone.
    Incomplete(String),
}

impl Plan {
    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.actions.iter().filter(|p| f(&p.action)).count()
    }

    pub fn disables(&self) -> usize {
        self.count(|a| matches!(a, Action::Disable { .. }))
    }

    /// Active accounts this plan takes for missing: marked within grace, or disabled.
    pub fn missing(&self) -> usize {
        self.count(|a| matches!(a, Action::MarkMissing { .. } | Action::Disable { .. }))
    }

    pub fn purges(&self) -> usize {
        self.count(|a| matches!(a, Action::Purge))
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
    without_subject: u64,
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
            without_subject: 0,
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

    /// Records entries that carry no subject: someone is there, nobody can tell who.
    pub fn observe_without_subject(&mut self, n: u64) {
        self.without_subject = self.without_subject.saturating_add(n);
    }

    /// The plan once the listing has ended. Only a complete listing plans any change.
    pub fn finish(self, listing: Listing, policy: &SweepPolicy, now: i64, force: Force) -> Plan {
        let mut plan = Plan {
            seen: self.listed,
            without_subject: self.without_subject,
            actions: Vec::new(),
            abort: None,
            purges_held: None,
        };
        if let Listing::Incomplete(reason) = listing {
            plan.abort = Some(reason);
            return plan;
        }
        let locals = self.locals.len() as u64;
        let (actions, active_locals) = self.actions(policy, now);
        plan.actions = actions;
        plan.abort = gate(&plan, active_locals, policy, force.disables);
        if plan.abort.is_none() {
            plan.purges_held = hold_purges(&mut plan, locals, policy, force.purges);
        }
        plan
    }

    fn actions(&self, policy: &SweepPolicy, now: i64) -> (Vec<Planned>, u64) {
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
                // Only what the sweeper disabled, and only while the directory still does not
                // list it as active (the arm above took those): an admin's hold is the admin's.
                (Seen::No | Seen::Inactive, LocalStatus::DisabledByDirectory { since }) => {
                    if policy
                        .retention
                        .is_some_and(|r| now.saturating_sub(since) >= r.as_secs() as i64)
                    {
                        push(&mut actions, Action::Purge);
                    }
                }
                (_, LocalStatus::DisabledOther { .. }) => {}
            }
        }
        (actions, active_locals)
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
    let listed = plan.seen + plan.without_subject;
    if !policy.without_subject.allows(plan.without_subject, listed) {
        // Not passed by force either: these people would look gone, and more force does not
        // tell who they are.
        return Some(format!(
            "{} of {listed} listed entries came without the subject attribute, so those people would look gone; make the attribute readable by the service account or narrow the filter to people, or raise max_entries_without_subject / max_entries_without_subject_fraction if these entries are not people",
            plan.without_subject
        ));
    }
    if force {
        return None;
    }
    let (disables, missing) = (plan.disables() as u64, plan.missing() as u64);
    let allowed = (policy.max_disable_fraction * active_locals as f64).ceil() as u64;
    if disables > allowed {
        return Some(format!(
            "the sweep would disable {disables} of {active_locals} active accounts, more than max_disable_fraction = {} allows ({allowed}); rerun with --force if this is intended",
            policy.max_disable_fraction
        ));
    }
    if missing > allowed {
        return Some(format!(
            "the sweep would take {missing} of {active_locals} active accounts for missing ({disables} to disable, the rest to mark within grace), more than max_disable_fraction = {} allows ({allowed}); rerun with --force if this is intended",
            policy.max_disable_fraction
        ));
    }
    if let Some(max) = policy.max_disable_count {
        if disables > max {
            return Some(format!(
                "the sweep would disable {disables} accounts, more than max_disable_count = {max}; rerun with --force if this is intended"
            ));
        }
        if missing > max {
            return Some(format!(
                "the sweep would take {missing} accounts for missing ({disables} to disable), more than max_disable_count = {max}; rerun with --force if this is intended"
            ));
        }
    }
    None
}

/// Which safety gates an operator chose to pass. Separate, so that passing the mass-disable
/// gate (reversible: an enable undoes it) never also lets a mass purge through (irreversible).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Force {
    /// Pass the disable and mark-missing caps (`--force`); never the empty-listing gate.
    pub disables: bool,
    /// Pass the purge cap (`--force-purge`).
    pub purges: bool,
}

impl Force {
    /// Both gates passed or neither.
    pub fn both(force: bool) -> Self {
        Self {
            disables: force,
            purges: force,
        }
    }
}

/// The purge cap. Too many purges are all held back (a partial batch would be arbitrary, and
/// would drain the cap sweep after sweep), while the rest of the plan goes ahead: leavers are
/// still disabled, and nothing irreversible happens until an operator looks.
fn hold_purges(plan: &mut Plan, locals: u64, policy: &SweepPolicy, force: bool) -> Option<String> {
    let purges = plan.purges() as u64;
    let allowed =
        ((policy.max_purge_fraction * locals as f64).ceil() as u64).min(policy.max_purge_count);
    if force || purges <= allowed {
        return None;
    }
    plan.actions.retain(|p| p.action != Action::Purge);
    Some(format!(
        "{purges} accounts are due for purging, more than max_purge_fraction = {} of {locals} accounts or max_purge_count = {} allow ({allowed}); none was purged; rerun with --force-purge if this is intended",
        policy.max_purge_fraction, policy.max_purge_count
    ))
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod regression_tests;
#[cfg(test)]
mod tests;
