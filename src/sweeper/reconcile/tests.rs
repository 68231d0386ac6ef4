use super::*;
use crate::config::PurgeMode;
use proptest::prelude::*;
use std::time::Duration;

pub(super) fn policy() -> SweepPolicy {
    SweepPolicy {
        grace_sweeps: 2,
        grace_period: Duration::ZERO,
        max_disable_fraction: 0.5,
        max_disable_count: None,
        without_subject: Default::default(),
        max_purge_fraction: 1.0,
        max_purge_count: 1000,
        reactivate: true,
        retention: Some(Duration::from_secs(1000)),
        purge: PurgeMode::Anonymize,
    }
}

pub(super) fn local(subject: &str) -> LocalIdentity {
    LocalIdentity {
        subject: subject.into(),
        account_id: format!("acc-{subject}"),
        status: LocalStatus::Active,
        missing_since: None,
        missing_count: 0,
    }
}

pub(super) fn plan(
    locals: Vec<LocalIdentity>,
    listing: &[(&str, bool)],
    policy: &SweepPolicy,
    force: bool,
) -> Plan {
    let mut r = Reconciler::new(locals);
    for (s, active) in listing {
        r.observe(s, *active);
    }
    r.finish(Listing::Complete, policy, 10_000, Force::both(force))
}

pub(super) fn action_of<'a>(p: &'a Plan, subject: &str) -> Option<&'a Action> {
    p.actions
        .iter()
        .find(|a| a.subject == subject)
        .map(|a| &a.action)
}

#[test]
fn a_missing_account_is_marked_first_and_disabled_after_the_grace() {
    let listing = [("a", true), ("b", true), ("c", true)];
    let p = plan(
        vec![local("a"), local("b"), local("c"), local("gone")],
        &listing,
        &policy(),
        false,
    );
    assert_eq!(
        action_of(&p, "gone"),
        Some(&Action::MarkMissing {
            missing_since: 10_000,
            missing_count: 1,
            why: Absence::Gone
        })
    );
    let mut second = local("gone");
    second.missing_since = Some(9_000);
    second.missing_count = 1;
    let p = plan(
        vec![local("a"), local("b"), local("c"), second],
        &listing,
        &policy(),
        false,
    );
    assert_eq!(
        action_of(&p, "gone"),
        Some(&Action::Disable {
            missing_since: 9_000,
            missing_count: 2,
            why: Absence::Gone
        })
    );
    assert_eq!(p.abort, None);
}

#[test]
fn a_grace_period_holds_the_disable_until_it_has_passed() {
    let mut pol = policy();
    pol.grace_sweeps = 1;
    pol.grace_period = Duration::from_secs(3600);
    let mut l = local("x");
    l.missing_since = Some(10_000 - 3599);
    let p = plan(vec![local("a"), l.clone()], &[("a", true)], &pol, false);
    assert!(matches!(
        action_of(&p, "x"),
        Some(Action::MarkMissing { .. })
    ));
    l.missing_since = Some(10_000 - 3600);
    let p = plan(vec![local("a"), l], &[("a", true)], &pol, false);
    assert!(matches!(action_of(&p, "x"), Some(Action::Disable { .. })));
}

#[test]
fn disabled_in_the_directory_counts_as_gone() {
    let mut pol = policy();
    pol.grace_sweeps = 1;
    let p = plan(
        vec![local("a"), local("b")],
        &[("a", true), ("b", false)],
        &pol,
        false,
    );
    assert!(matches!(
        action_of(&p, "b"),
        Some(Action::Disable {
            why: Absence::DisabledInDirectory,
            ..
        })
    ));
}

#[test]
fn an_empty_listing_never_changes_anything_even_forced() {
    for force in [false, true] {
        let p = plan(vec![local("a"), local("b")], &[], &policy(), force);
        assert!(p.abort.as_deref().unwrap().contains("listed nobody"));
    }
}

#[test]
fn a_mass_disable_above_the_fraction_stops_unless_forced() {
    let mut pol = policy();
    pol.grace_sweeps = 1;
    pol.max_disable_fraction = 0.1;
    let locals: Vec<_> = (0..20).map(|i| local(&format!("u{i}"))).collect();
    let listing: Vec<(String, bool)> = (0..17).map(|i| (format!("u{i}"), true)).collect();
    let listing: Vec<(&str, bool)> = listing.iter().map(|(s, a)| (s.as_str(), *a)).collect();
    let p = plan(locals.clone(), &listing, &pol, false);
    assert_eq!(p.disables(), 3);
    assert!(
        p.abort
            .as_deref()
            .unwrap()
            .contains("more than max_disable_fraction"),
        "{:?}",
        p.abort
    );
    let forced = plan(locals.clone(), &listing, &pol, true);
    assert_eq!(forced.abort, None);
    // Two of twenty is within ceil(10% of 20) = 2.
    let listing2: Vec<(&str, bool)> = listing.iter().copied().chain([("u17", true)]).collect();
    assert_eq!(plan(locals, &listing2, &pol, false).abort, None);
}

#[test]
fn a_max_disable_count_stops_the_sweep() {
    let mut pol = policy();
    pol.grace_sweeps = 1;
    pol.max_disable_count = Some(1);
    let p = plan(
        vec![local("a"), local("b"), local("c"), local("d")],
        &[("a", true), ("b", true)],
        &pol,
        false,
    );
    assert!(
        p.abort
            .as_deref()
            .unwrap()
            .contains("max_disable_count = 1")
    );
}

#[test]
fn a_returning_account_follows_the_reactivation_policy() {
    let mut l = local("back");
    l.status = LocalStatus::DisabledByDirectory { since: 9_990 };
    let mut admin = local("admin-disabled");
    admin.status = LocalStatus::DisabledOther { since: 9_990 };
    let listing = [("back", true), ("admin-disabled", true)];
    let p = plan(vec![l.clone(), admin.clone()], &listing, &policy(), false);
    assert_eq!(action_of(&p, "back"), Some(&Action::Reactivate));
    assert_eq!(
        action_of(&p, "admin-disabled"),
        None,
        "the sweeper never undoes an admin's disable"
    );
    let mut keep = policy();
    keep.reactivate = false;
    let p = plan(vec![l], &listing, &keep, false);
    assert_eq!(action_of(&p, "back"), Some(&Action::LeaveDisabled));
}

#[test]
fn a_reappearing_missing_account_is_cleared() {
    let mut l = local("flaky");
    l.missing_since = Some(9_000);
    l.missing_count = 1;
    let p = plan(vec![l], &[("flaky", true)], &policy(), false);
    assert_eq!(action_of(&p, "flaky"), Some(&Action::ClearMissing));
}

#[test]
fn accounts_disabled_beyond_retention_are_purged() {
    let mut old = local("old");
    old.status = LocalStatus::DisabledByDirectory {
        since: 10_000 - 1000,
    };
    let mut recent = local("recent");
    recent.status = LocalStatus::DisabledByDirectory {
        since: 10_000 - 999,
    };
    let p = plan(
        vec![local("a"), old, recent],
        &[("a", true)],
        &policy(),
        false,
    );
    assert_eq!(action_of(&p, "old"), Some(&Action::Purge));
    assert_eq!(action_of(&p, "recent"), None);
}

/// `--force` passes the mass-disable gate only: the purge cap needs `--force-purge`, since a
/// purge cannot be undone.
#[test]
fn force_for_disables_does_not_pass_the_purge_cap() {
    let olds: Vec<LocalIdentity> = (0..5)
        .map(|i| {
            let mut l = local(&format!("old{i}"));
            l.status = LocalStatus::DisabledByDirectory {
                since: 10_000 - 1000,
            };
            l
        })
        .collect();
    let mut pol = policy();
    pol.max_purge_count = 2;
    let finish = |force: Force| {
        let mut r = Reconciler::new(olds.clone());
        r.observe("someone", true);
        r.finish(Listing::Complete, &pol, 10_000, force)
    };
    let disables_only = finish(Force {
        disables: true,
        purges: false,
    });
    assert_eq!(disables_only.purges(), 0);
    assert!(
        disables_only
            .purges_held
            .as_deref()
            .is_some_and(|m| m.contains("--force-purge")),
        "{:?}",
        disables_only.purges_held
    );
    let purges = finish(Force {
        disables: false,
        purges: true,
    });
    assert_eq!(purges.purges(), 5);
    assert_eq!(purges.purges_held, None);
}

proptest! {
    /// Whatever the listing, an account the directory lists as active is never disabled, and
    /// nothing is disabled before its grace.
    #[test]
    fn listed_active_accounts_are_never_disabled(
        present in proptest::collection::vec(any::<bool>(), 1..60),
        counts in proptest::collection::vec(0i32..3, 60),
    ) {
        let locals: Vec<_> = present.iter().enumerate().map(|(i, _)| {
            let mut l = local(&format!("u{i}"));
            l.missing_count = counts[i];
            if counts[i] > 0 { l.missing_since = Some(1); }
            l
        }).collect();
        let names: Vec<String> = (0..present.len()).map(|i| format!("u{i}")).collect();
        let listing: Vec<(&str, bool)> = names.iter().zip(&present).filter(|(_, p)| **p).map(|(n, _)| (n.as_str(), true)).collect();
        let p = plan(locals, &listing, &policy(), true);
        for a in &p.actions {
            let i: usize = a.subject[1..].parse().unwrap();
            if let Action::Disable { missing_count, .. } = a.action {
                prop_assert!(!present[i]);
                prop_assert!(missing_count as u32 >= policy().grace_sweeps);
            }
        }
    }
}
