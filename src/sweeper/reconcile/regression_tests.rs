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
