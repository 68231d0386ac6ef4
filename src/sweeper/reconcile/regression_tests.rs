//! Regression tests for the reconciler's gates, each named after the bug it pins down.

use super::tests::{action_of, local, plan, policy};
use super::*;

fn subjects(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("u{i}")).collect()
}

#[test]
fn marking_most_accounts_missing_was_not_gated_like_disabling() {
    // Grace of 2 sweeps: a listing that lost half the directory only marks them missing this
    // sweep, and marking starts their grace clock. It must stop like a mass disable does.
    let mut pol = policy();
    pol.max_disable_fraction = 0.1;
    let names = subjects(20);
    let locals: Vec<_> = names.iter().map(|s| local(s)).collect();
    let listing: Vec<(&str, bool)> = names[..10].iter().map(|s| (s.as_str(), true)).collect();
    let p = plan(locals.clone(), &listing, &pol, false);
    assert_eq!(
        p.count(|a| matches!(a, Action::MarkMissing { .. })),
        10,
        "{p:?}"
    );
    assert_eq!(p.disables(), 0);
    let reason = p
        .abort
        .as_deref()
        .expect("marking half the accounts missing is gated");
    assert!(reason.contains("max_disable_fraction"), "{reason}");
    // The count gate too.
    let mut pol = policy();
    pol.max_disable_fraction = 1.0;
    pol.max_disable_count = Some(3);
    let p = plan(locals.clone(), &listing, &pol, false);
    let reason = p.abort.as_deref().expect("the count gate covers marking");
    assert!(reason.contains("max_disable_count = 3"), "{reason}");
    // And --force passes it, as for disables.
    assert_eq!(plan(locals, &listing, &pol, true).abort, None);
}

#[test]
fn an_admin_disabled_account_the_directory_still_lists_as_active_was_purged() {
    let mut admin = local("on-leave");
    admin.status = LocalStatus::DisabledOther { since: 1 };
    let p = plan(
        vec![local("a"), admin],
        &[("a", true), ("on-leave", true)],
        &policy(),
        false,
    );
    assert_eq!(action_of(&p, "on-leave"), None, "{p:?}");
}

#[test]
fn an_admin_disabled_account_gone_from_the_directory_was_purged_by_the_sweeper() {
    // Only what the sweeper disabled is the sweeper's to purge; an admin's hold is the admin's.
    let mut admin = local("held");
    admin.status = LocalStatus::DisabledOther { since: 1 };
    let p = plan(vec![local("a"), admin], &[("a", true)], &policy(), false);
    assert_eq!(action_of(&p, "held"), None, "{p:?}");
}

#[test]
fn too_many_purges_are_held_back_while_the_rest_of_the_sweep_goes_ahead() {
    let mut pol = policy();
    pol.grace_sweeps = 1;
    pol.max_purge_fraction = 0.2;
    let mut locals: Vec<_> = subjects(10).iter().map(|s| local(s)).collect();
    for l in &mut locals[..3] {
        l.status = LocalStatus::DisabledByDirectory { since: 1 };
    }
    // u3 left; u0..u2 are due for purging: 3 of 10 is more than 20%.
    let listing: Vec<(&str, bool)> = ["u4", "u5", "u6", "u7", "u8", "u9"]
        .iter()
        .map(|s| (*s, true))
        .collect();
    let p = plan(locals.clone(), &listing, &pol, false);
    assert_eq!(p.abort, None);
    assert_eq!((p.purges(), p.disables()), (0, 1), "{p:?}");
    assert!(
        p.purges_held
            .as_deref()
            .unwrap()
            .contains("max_purge_fraction")
    );
    pol.max_purge_fraction = 1.0;
    pol.max_purge_count = 2;
    let p = plan(locals.clone(), &listing, &pol, false);
    assert!(
        p.purges_held
            .as_deref()
            .unwrap()
            .contains("max_purge_count = 2")
    );
    pol.max_purge_count = 3;
    assert_eq!(plan(locals.clone(), &listing, &pol, false).purges(), 3);
    pol.max_purge_count = 0;
    assert_eq!(
        plan(locals, &listing, &pol, true).purges(),
        3,
        "force passes it"
    );
}

#[test]
fn entries_without_a_subject_stop_the_sweep_unless_tolerated_even_forced() {
    let locals = vec![local("a"), local("b")];
    let run = |tolerance: crate::config::Tolerance, n: u64, force: bool| {
        let mut pol = policy();
        pol.without_subject = tolerance;
        let mut r = Reconciler::new(locals.clone());
        r.observe("a", true);
        r.observe("b", true);
        r.observe_without_subject(n);
        r.finish(Listing::Complete, &pol, 10_000, Force::both(force))
    };
    use crate::config::Tolerance;
    let none = Tolerance::default();
    assert_eq!(run(none, 0, false).abort, None);
    for force in [false, true] {
        let p = run(none, 1, force);
        assert!(p.abort.unwrap().contains("without the subject attribute"));
    }
    let two = Tolerance {
        count: Some(2),
        fraction: None,
    };
    assert_eq!(run(two, 2, false).abort, None);
    assert_eq!(run(two, 2, false).without_subject, 2);
    assert!(run(two, 3, false).abort.is_some());
    // 1 of 3 listed is within a third, 2 of 4 is not.
    let third = Tolerance {
        count: None,
        fraction: Some(0.34),
    };
    assert_eq!(run(third, 1, false).abort, None);
    assert!(run(third, 2, false).abort.is_some());
    let both = Tolerance {
        count: Some(5),
        fraction: Some(0.34),
    };
    assert!(run(both, 2, false).abort.is_some(), "both must hold");
}
