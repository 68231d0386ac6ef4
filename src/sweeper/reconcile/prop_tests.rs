//! Property tests for the gates: whatever the locals, the listing and the policy, no plan
//! that may be applied goes past a cap without force, and no incomplete listing plans anything.

use super::*;
use crate::config::{PurgeMode, Tolerance};
use proptest::prelude::*;
use std::time::Duration;

const NOW: i64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
enum InListing {
    Active,
    Inactive,
    Absent,
}

fn local_strategy() -> impl Strategy<Value = (u8, i64, i32, InListing)> {
    (
        0u8..3,
        0i64..NOW,
        0i32..4,
        prop_oneof![
            Just(InListing::Active),
            Just(InListing::Inactive),
            Just(InListing::Absent)
        ],
    )
}

prop_compose! {
    fn policy_strategy()(
        grace_sweeps in 1u32..4,
        max_disable_fraction in 0.0f64..=1.0,
        max_disable_count in proptest::option::of(0u64..10),
        count in proptest::option::of(0u64..4),
        fraction in proptest::option::of(0.0f64..=1.0),
        max_purge_fraction in 0.0f64..=1.0,
        max_purge_count in 0u64..10,
        retention in proptest::option::of(0u64..NOW as u64),
        reactivate in any::<bool>(),
    ) -> SweepPolicy {
        SweepPolicy {
            grace_sweeps,
            grace_period: Duration::ZERO,
            max_disable_fraction,
            max_disable_count,
            without_subject: Tolerance { count, fraction },
            max_purge_fraction,
            max_purge_count,
            reactivate,
            retention: retention.map(Duration::from_secs),
            purge: PurgeMode::Anonymize,
        }
    }
}

fn build(
    locals: &[(u8, i64, i32, InListing)],
    strangers: usize,
    without_subject: u64,
) -> (Reconciler, Vec<LocalIdentity>) {
    let ls: Vec<LocalIdentity> = locals
        .iter()
        .enumerate()
        .map(|(i, &(status, since, missing_count, _))| LocalIdentity {
            subject: format!("u{i}"),
            account_id: format!("a{i}"),
            status: match status {
                0 => LocalStatus::Active,
                1 => LocalStatus::DisabledByDirectory { since },
                _ => LocalStatus::DisabledOther { since },
            },
            missing_since: (missing_count > 0).then_some(since),
            missing_count,
        })
        .collect();
    let mut r = Reconciler::new(ls.clone());
    for (i, &(_, _, _, listed)) in locals.iter().enumerate() {
        match listed {
            InListing::Active => r.observe(&format!("u{i}"), true),
            InListing::Inactive => r.observe(&format!("u{i}"), false),
            InListing::Absent => {}
        }
    }
    for i in 0..strangers {
        r.observe(&format!("stranger{i}"), true);
    }
    r.observe_without_subject(without_subject);
    (r, ls)
}

proptest! {
    #[test]
    fn no_plan_marks_missing_disables_or_purges_past_a_cap_without_force(
        locals in proptest::collection::vec(local_strategy(), 0..40),
        strangers in 0usize..5,
        without_subject in 0u64..4,
        policy in policy_strategy(),
    ) {
        let (r, ls) = build(&locals, strangers, without_subject);
        let plan = r.finish(Listing::Complete, &policy, NOW, Force::both(false));
        if plan.abort.is_some() {
            return Ok(());
        }
        let active = ls.iter().filter(|l| l.status == LocalStatus::Active).count() as f64;
        let cap = (policy.max_disable_fraction * active).ceil() as usize;
        prop_assert!(plan.missing() <= cap, "{} > {cap}: {plan:?}", plan.missing());
        prop_assert!(plan.disables() <= plan.missing());
        if let Some(max) = policy.max_disable_count {
            prop_assert!(plan.missing() as u64 <= max);
        }
        let purge_cap = ((policy.max_purge_fraction * ls.len() as f64).ceil() as u64)
            .min(policy.max_purge_count);
        prop_assert!(plan.purges() as u64 <= purge_cap);
        let listed = plan.seen + plan.without_subject;
        prop_assert!(policy.without_subject.allows(plan.without_subject, listed));
        // Purges only touch what the sweeper disabled and the directory does not list as active.
        for p in &plan.actions {
            let i: usize = p.subject[1..].parse().unwrap();
            if p.action == Action::Purge {
                let by_directory = matches!(ls[i].status, LocalStatus::DisabledByDirectory { .. });
                let listed_active = matches!(locals[i].3, InListing::Active);
                prop_assert!(by_directory && !listed_active, "{p:?}");
            }
        }
    }

    #[test]
    fn no_incomplete_listing_plans_any_change_even_forced(
        locals in proptest::collection::vec(local_strategy(), 0..40),
        strangers in 0usize..5,
        without_subject in 0u64..4,
        policy in policy_strategy(),
        force in any::<bool>(),
        reason in "[a-z ]{1,20}",
    ) {
        let (r, _) = build(&locals, strangers, without_subject);
        let plan = r.finish(Listing::Incomplete(reason.clone()), &policy, NOW, Force::both(force));
        prop_assert!(plan.actions.is_empty(), "{plan:?}");
        prop_assert_eq!(plan.abort, Some(reason));
    }
}
