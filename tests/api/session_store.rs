//! One conformance suite, run against every session store (in-process and Redis).

use crate::helpers::redis_url;
use jitbridge::provisioning::AccountSnapshot;
use jitbridge::session::snapshot::Role;
use jitbridge::session::{
    AccountState, SessionId, SessionRecord, SessionStore, Timeouts, unix_now,
};
use std::time::Duration;

pub(crate) fn record(account: &str) -> SessionRecord {
    SessionRecord {
        account: AccountSnapshot {
            id: account.into(),
            username: format!("user-{account}"),
            email: None,
            display_name: None,
            roles: vec!["r".into()],
            version: 0,
            // Made before snapshots existed: served from its own copy without one.
            revision: None,
            role_ends: Vec::new(),
        },
        connection: "c".into(),
        subject: "s".into(),
        idp_session: Some("sid-1".into()),
        idp_principal: None,
        idp_logout_ref: None,
        created_at: unix_now(),
        expires_at: unix_now() + 3600,
    }
}

pub(crate) fn timeouts(idle: u64) -> Timeouts {
    Timeouts {
        idle: Duration::from_secs(idle),
        absolute: Duration::from_secs(3600),
    }
}

async fn stores(idle: u64) -> Vec<(&'static str, SessionStore)> {
    let prefix = format!("jbtest:{}:", uuid::Uuid::new_v4().simple());
    let near = format!("jbtest:{}:", uuid::Uuid::new_v4().simple());
    vec![
        ("memory", SessionStore::memory(timeouts(idle))),
        (
            "redis",
            SessionStore::redis(&redis_url(), &prefix, timeouts(idle))
                .await
                .expect("Redis is reachable (JB_TEST_REDIS)"),
        ),
        (
            "redis+near cache",
            crate::near_cache::serving(
                SessionStore::redis(&redis_url(), &near, timeouts(idle))
                    .await
                    .expect("Redis is reachable (JB_TEST_REDIS)")
                    .with_near_cache(1000),
            )
            .await,
        ),
    ]
}

#[tokio::test]
async fn a_created_session_is_found_by_its_id_and_gone_after_delete() {
    for (name, s) in stores(600).await {
        let id = s.create(record("a1")).await.unwrap();
        let stored = record("a1");
        let id = {
            s.delete(&id).await.unwrap();
            s.create(stored.clone()).await.unwrap()
        };
        assert_eq!(
            s.get(&id).await.unwrap(),
            Some(stored),
            "{name}: the whole record round-trips"
        );
        assert_eq!(
            s.get(&id).await.unwrap().unwrap().account.id,
            "a1",
            "{name}"
        );
        s.delete(&id).await.unwrap();
        assert_eq!(s.get(&id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn an_unknown_or_malformed_id_finds_nothing() {
    for (name, s) in stores(600).await {
        assert_eq!(s.get(&SessionId::generate()).await.unwrap(), None, "{name}");
        assert!(SessionId::parse("../../etc/passwd").is_none());
        assert!(SessionId::parse("").is_none());
    }
}

#[tokio::test]
async fn revoking_an_account_ends_all_its_sessions_and_only_those() {
    for (name, s) in stores(600).await {
        let a = [
            s.create(record("acc-a")).await.unwrap(),
            s.create(record("acc-a")).await.unwrap(),
        ];
        let b = s.create(record("acc-b")).await.unwrap();
        assert_eq!(s.revoke_account("acc-a", None).await.unwrap(), 2, "{name}");
        for id in &a {
            assert_eq!(s.get(id).await.unwrap(), None, "{name}");
        }
        assert!(s.get(&b).await.unwrap().is_some(), "{name}");
        assert_eq!(s.revoke_account("acc-a", None).await.unwrap(), 0, "{name}");
    }
}

#[tokio::test]
async fn a_session_past_its_absolute_end_is_gone() {
    for (name, s) in stores(600).await {
        let mut r = record("acc-x");
        r.expires_at = unix_now() - 1;
        let id = s.create(r).await.unwrap();
        assert_eq!(s.get(&id).await.unwrap(), None, "{name}");
    }
}

#[tokio::test]
async fn an_idle_session_expires_and_use_keeps_it_alive() {
    for (name, s) in stores(2).await {
        let idle = s.create(record("acc-i")).await.unwrap();
        let used = s.create(record("acc-u")).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert!(
                s.get(&used).await.unwrap().is_some(),
                "{name}: a used session stays"
            );
        }
        assert_eq!(
            s.get(&idle).await.unwrap(),
            None,
            "{name}: idle for 3.3s > 2s"
        );
    }
}

#[tokio::test]
async fn first_use_detects_replays() {
    for (name, s) in stores(600).await {
        assert!(
            s.first_use("jti-1", Duration::from_secs(60)).await.unwrap(),
            "{name}"
        );
        assert!(
            !s.first_use("jti-1", Duration::from_secs(60)).await.unwrap(),
            "{name}"
        );
        assert!(
            s.first_use("jti-2", Duration::from_secs(60)).await.unwrap(),
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_an_empty_answer() {
    let r = SessionStore::redis("redis://127.0.0.1:1", "x:", timeouts(60)).await;
    assert!(r.is_err());
}

/// A SAML LogoutRequest without SessionIndex names only the NameID: the sessions established
/// with it end, whatever the account's subject is, and only those.
#[tokio::test]
async fn revoking_a_name_id_ends_the_sessions_established_with_it() {
    let with = |value: &str| SessionRecord {
        idp_session: None,
        ..saml_record(record("acc-n"), &nid(value))
    };
    for (name, s) in stores(600).await {
        let alice = [
            s.create(with("alice@example.com")).await.unwrap(),
            s.create(with("alice@example.com")).await.unwrap(),
        ];
        let bob = s.create(with("bob@example.com")).await.unwrap();
        assert_eq!(
            s.revoke_principal("other-connection", &principal(&nid("alice@example.com")))
                .await
                .unwrap(),
            0,
            "{name}: another connection's NameID is another person"
        );
        assert_eq!(
            s.revoke_principal("c", &principal(&nid("alice@example.com")))
                .await
                .unwrap(),
            2,
            "{name}"
        );
        for id in &alice {
            assert_eq!(s.get(id).await.unwrap(), None, "{name}");
        }
        assert!(s.get(&bob).await.unwrap().is_some(), "{name}");
        // A NameID that happens to equal a session id is still a NameID.
        let by_sid = s.create(record("acc-s")).await.unwrap();
        assert_eq!(
            s.revoke_principal("c", &principal(&nid("sid-1")))
                .await
                .unwrap(),
            0,
            "{name}"
        );
        assert!(s.get(&by_sid).await.unwrap().is_some(), "{name}");
    }
}

/// A LogoutRequest names a SessionIndex and a NameID: only a session with both ends.
#[tokio::test]
async fn a_saml_session_ends_only_for_its_session_index_and_name_id_together() {
    let with = |value: &str, sid: &str| SessionRecord {
        idp_session: Some(sid.into()),
        ..saml_record(record("acc-x"), &nid(value))
    };
    for (name, s) in stores(600).await {
        let alice = s.create(with("alice@example.com", "_s1")).await.unwrap();
        let bob = s.create(with("bob@example.com", "_s2")).await.unwrap();
        assert_eq!(
            s.revoke_principal_session("c", "_s2", &principal(&nid("alice@example.com")))
                .await
                .unwrap(),
            0,
            "{name}: bob's SessionIndex with alice's NameID ends nothing"
        );
        assert!(s.get(&bob).await.unwrap().is_some(), "{name}");
        assert_eq!(
            s.revoke_principal_session("c", "_s1", &principal(&nid("alice@example.com")))
                .await
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(s.get(&alice).await.unwrap(), None, "{name}");
        assert!(s.get(&bob).await.unwrap().is_some(), "{name}");
    }
}

/// Regression: the Redis `revoke_account` read the account's index (SMEMBERS), then deleted the
/// sessions it had read and the whole index. A session inserted in between kept its record but
/// lost its index entry, so no later revocation could find it: it survived until its absolute
/// end. Sessions are inserted while revocations run; a final revocation must end every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_account_never_orphans_a_session_inserted_while_it_runs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    for (name, s) in stores(600).await {
        let stop = Arc::new(AtomicBool::new(false));
        let revoker = {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(SeqCst) {
                    s.revoke_account("acc-r", None).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        let inserters: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for _ in 0..300 {
                        ids.push(s.create(record("acc-r")).await.unwrap());
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in inserters {
            ids.extend(t.await.unwrap());
        }
        stop.store(true, SeqCst);
        revoker.await.unwrap();
        s.revoke_account("acc-r", None).await.unwrap();
        let mut survivors = 0;
        for id in &ids {
            if s.get(id).await.unwrap().is_some() {
                survivors += 1;
            }
        }
        assert_eq!(
            survivors,
            0,
            "{name}: sessions out of {} that no revocation can reach",
            ids.len()
        );
    }
}

/// A login that provisioned just before a disable committed, and stored its session just
/// after the disable's revocation ran, kept that session until its absolute end: the
/// revocation had nothing to end yet. The account's epoch refuses it wherever it is checked.
#[tokio::test]
async fn a_session_made_before_a_disable_is_refused_even_when_stored_after_the_revocation() {
    for (name, s) in stores(600).await {
        let account = format!("acc-epoch-{}", uuid::Uuid::new_v4().simple());
        let mut before = record(&account);
        before.account.version = 3;
        let early = s.create(before.clone()).await.unwrap();
        // The disable brought the account to version 4 and revoked.
        assert_eq!(
            s.revoke_account(&account, Some(4)).await.unwrap(),
            1,
            "{name}"
        );
        assert!(s.get(&early).await.unwrap().is_none(), "{name}");
        // The racing login's session lands now, made at version 3.
        let late = s.create(before).await.unwrap();
        assert!(
            s.get(&late).await.unwrap().is_none(),
            "{name}: a session older than the account's epoch is refused"
        );
        // A session after a re-enable (version 5) lives, and the same revocation applied again
        // (a follower re-reading its window) leaves it alone.
        let mut after = record(&account);
        after.account.version = 5;
        let fresh = s.create(after).await.unwrap();
        assert_eq!(
            s.revoke_account(&account, Some(4)).await.unwrap(),
            0,
            "{name}"
        );
        assert!(s.get(&fresh).await.unwrap().is_some(), "{name}");
        // An epoch never moves back.
        s.revoke_account(&account, Some(2)).await.unwrap();
        let mut old = record(&account);
        old.account.version = 3;
        let stale = s.create(old).await.unwrap();
        assert!(s.get(&stale).await.unwrap().is_none(), "{name}");
    }
}

fn nid(value: &str) -> jitbridge::idp::saml::logout::NameId {
    jitbridge::idp::saml::logout::NameId {
        value: value.into(),
        ..Default::default()
    }
}

/// A NameID as the SAML adapter hands it on: the key sessions are indexed by.
fn principal(n: &jitbridge::idp::saml::logout::NameId) -> String {
    jitbridge::idp::saml::slo::principal(n).key
}

/// `record` established with this NameID, as the login service stores a SAML login.
fn saml_record(record: SessionRecord, n: &jitbridge::idp::saml::logout::NameId) -> SessionRecord {
    let p = jitbridge::idp::saml::slo::principal(n);
    SessionRecord {
        idp_principal: Some(p.key),
        idp_logout_ref: Some(p.logout_ref),
        ..record
    }
}

/// A LogoutRequest's NameID is an identifier with its qualifiers (SAML core 2.2.3): one that
/// names another NameQualifier or SPNameQualifier (another IdP or SP namespace with the same
/// value) ended the session; an absent qualifier matches only an absent one.
#[tokio::test]
async fn a_logout_request_whose_name_id_qualifiers_differ_ends_nothing() {
    use jitbridge::idp::saml::logout::NameId;
    let qualified = |nq: Option<&str>, spnq: Option<&str>| NameId {
        value: "alice".into(),
        name_qualifier: nq.map(str::to_string),
        sp_name_qualifier: spnq.map(str::to_string),
        ..NameId::default()
    };
    let session = qualified(Some("https://idp"), Some("https://sp"));
    for (name, s) in stores(600).await {
        let rec = SessionRecord {
            idp_session: Some("_s1".into()),
            ..saml_record(record("acc-q"), &session)
        };
        let id = s.create(rec).await.unwrap();
        for other in [
            qualified(Some("https://other-idp"), Some("https://sp")),
            qualified(Some("https://idp"), None),
            qualified(None, None),
            qualified(Some("https://idp"), Some("")),
        ] {
            assert_eq!(
                s.revoke_principal_session("c", "_s1", &principal(&other))
                    .await
                    .unwrap(),
                0,
                "{name}: {other:?}"
            );
            assert_eq!(
                s.revoke_principal("c", &principal(&other)).await.unwrap(),
                0,
                "{name}: {other:?}"
            );
        }
        assert!(s.get(&id).await.unwrap().is_some(), "{name}");
        assert_eq!(
            s.revoke_principal_session("c", "_s1", &principal(&session))
                .await
                .unwrap(),
            1,
            "{name}"
        );
    }
}

pub(crate) fn snapshot(
    account: &str,
    revision: i64,
    active: bool,
    roles: &[(&str, Option<i64>)],
) -> AccountState {
    AccountState {
        id: account.into(),
        revision,
        active,
        username: format!("user-{account}-r{revision}"),
        email: None,
        display_name: None,
        roles: roles
            .iter()
            .map(|(name, until)| Role {
                name: (*name).into(),
                until: *until,
            })
            .collect(),
    }
}

/// Regression: the roles of a live session were the login's copy, so a role an admin removed
/// kept counting until the session ended. The account's snapshot, read with the session, wins.
#[tokio::test]
async fn a_role_removed_from_the_account_stops_counting_in_its_live_sessions() {
    for (name, s) in stores(600).await {
        let id = s.create(record("roles")).await.unwrap();
        assert_eq!(
            s.get(&id).await.unwrap().unwrap().account.roles,
            vec!["r"],
            "{name}"
        );
        assert!(
            s.put_account(&snapshot("roles", 2, true, &[("other", None)]))
                .await
                .unwrap()
        );
        let live = s.get(&id).await.unwrap().expect("the session lives on");
        assert_eq!(
            live.account.roles,
            vec!["other"],
            "{name}: the removed role still counts"
        );
        assert_eq!(live.account.username, "user-roles-r2", "{name}");
    }
}

/// Regression: a temporary grant stayed effective in a live session after its end.
#[tokio::test]
async fn a_temporary_grant_stops_counting_in_live_sessions_when_it_ends() {
    for (name, s) in stores(600).await {
        let id = s.create(record("grant")).await.unwrap();
        let until = unix_now() + 2;
        let state = snapshot("grant", 1, true, &[("r", None), ("oncall", Some(until))]);
        assert!(s.put_account(&state).await.unwrap());
        assert_eq!(
            s.get(&id).await.unwrap().unwrap().account.roles,
            vec!["oncall", "r"]
        );
        while unix_now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let live = s.get(&id).await.unwrap().expect("the session lives on");
        assert_eq!(
            live.account.roles,
            vec!["r"],
            "{name}: the ended grant still counts"
        );
    }
}

/// A snapshot delivered late (a slow login's, behind an admin's change) never replaces a newer
/// one, whatever the order of arrival.
#[tokio::test]
async fn a_late_snapshot_never_replaces_a_newer_one() {
    for (name, s) in stores(600).await {
        let id = s.create(record("late")).await.unwrap();
        assert!(
            s.put_account(&snapshot("late", 5, true, &[("new", None)]))
                .await
                .unwrap()
        );
        assert!(
            !s.put_account(&snapshot("late", 4, true, &[("old", None)]))
                .await
                .unwrap(),
            "{name}: an older revision was stored"
        );
        assert_eq!(
            s.get(&id).await.unwrap().unwrap().account.roles,
            vec!["new"],
            "{name}"
        );
        // The same revision again (a replayed delivery) is harmless.
        assert!(
            s.put_account(&snapshot("late", 5, true, &[("new", None)]))
                .await
                .unwrap()
        );
    }
}

/// A snapshot that says the account is disabled refuses its sessions on every check, even
/// without an epoch (defence in depth beside the revocation).
#[tokio::test]
async fn a_disabled_snapshot_refuses_the_accounts_sessions() {
    for (name, s) in stores(600).await {
        let id = s.create(record("off")).await.unwrap();
        assert!(
            s.put_account(&snapshot("off", 3, false, &[("r", None)]))
                .await
                .unwrap()
        );
        assert_eq!(s.get(&id).await.unwrap(), None, "{name}");
        // Another account's sessions are untouched.
        let other = s.create(record("on")).await.unwrap();
        assert!(s.get(&other).await.unwrap().is_some(), "{name}");
    }
}

/// A session made since snapshots exist names its revision: a store that lost the account's
/// snapshot (a failover, an unreadable value) or holds an older one cannot show a role removed
/// since, so the session is refused, and ended (a later snapshot does not bring it back).
#[tokio::test]
async fn a_session_whose_account_snapshot_was_lost_or_is_older_is_refused_and_ended() {
    for (name, s) in stores(600).await {
        let mut made = record("lost");
        made.account.revision = Some(4);
        let id = s.create(made.clone()).await.unwrap();
        assert_eq!(
            s.get(&id).await.unwrap(),
            None,
            "{name}: served without a snapshot"
        );
        assert!(
            s.put_account(&snapshot("lost", 4, true, &[("r", None)]))
                .await
                .unwrap()
        );
        assert_eq!(
            s.get(&id).await.unwrap(),
            None,
            "{name}: a refused session came back"
        );

        let id = s.create(made.clone()).await.unwrap();
        assert!(
            s.get(&id).await.unwrap().is_some(),
            "{name}: the snapshot is as new"
        );
        made.account.revision = Some(5);
        let newer = s.create(made).await.unwrap();
        assert_eq!(
            s.get(&newer).await.unwrap(),
            None,
            "{name}: served from an older snapshot"
        );
    }
}

/// A purged account's snapshot is forgotten (no personal value stays in the store); its
/// epoch stays.
#[tokio::test]
async fn a_dropped_account_snapshot_is_gone_but_its_epoch_stays() {
    for (name, s) in stores(600).await {
        let mut made = record("gone");
        made.account.revision = Some(1);
        assert!(
            s.put_account(&snapshot("gone", 1, true, &[("r", None)]))
                .await
                .unwrap()
        );
        let id = s.create(made.clone()).await.unwrap();
        assert!(s.get(&id).await.unwrap().is_some(), "{name}");
        s.revoke_account("gone", Some(3)).await.unwrap();
        s.drop_account("gone").await.unwrap();
        // The snapshot is gone: a session made with one is refused for the lack of it ...
        let again = s.create(made.clone()).await.unwrap();
        assert_eq!(s.get(&again).await.unwrap(), None, "{name}");
        // ... and the epoch still refuses an old session even with a snapshot back.
        assert!(
            s.put_account(&snapshot("gone", 9, true, &[]))
                .await
                .unwrap()
        );
        let old = s.create(made).await.unwrap();
        assert_eq!(
            s.get(&old).await.unwrap(),
            None,
            "{name}: the epoch was dropped too"
        );
    }
}

/// A stored record this release could not decode (damaged, or written by a newer release
/// during a rolling upgrade) answered `/auth/verify` with 503 at every request of that browser,
/// as if the store were down. It is no session now: a newer format is left for the release
/// that wrote it, a damaged record is deleted, and a record written before formats existed is
/// still read.
#[tokio::test]
async fn an_unreadable_or_newer_session_record_is_no_session_not_an_outage() {
    use redis::AsyncCommands;
    let prefix = format!("jbtest:{}:", uuid::Uuid::new_v4().simple());
    let s = SessionStore::redis(&redis_url(), &prefix, timeouts(600))
        .await
        .unwrap();
    let mut c = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let id = s.create(record("a1")).await.unwrap();
    let key = format!("{prefix}s:{}", id.store_key());
    let raw: String = c.get(&key).await.unwrap();
    assert!(raw.ends_with(r#","v":1}"#), "{raw}");
    assert!(raw.starts_with(r#"{"account":{"id":"a1""#), "{raw}");

    let _: () = c
        .set(&key, raw.replace(r#","v":1}"#, r#","v":2}"#))
        .await
        .unwrap();
    assert!(s.get(&id).await.unwrap().is_none(), "a newer format");
    assert!(
        c.exists::<_, bool>(&key).await.unwrap(),
        "kept for its release"
    );

    let _: () = c.set(&key, raw.replace(r#","v":1}"#, "}")).await.unwrap();
    assert!(
        s.get(&id).await.unwrap().is_some(),
        "a record without a format"
    );

    let _: () = c
        .set(&key, r#"{"account":{"id":"a1","username":7}}"#)
        .await
        .unwrap();
    assert!(s.get(&id).await.unwrap().is_none(), "a damaged record");
    assert!(!c.exists::<_, bool>(&key).await.unwrap(), "deleted");
}
