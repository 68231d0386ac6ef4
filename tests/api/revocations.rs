//! The revocation log as a server with in-process sessions follows it.

use crate::direct::library_db;
use crate::helpers::uses_postgres;
use diesel::connection::SimpleConnection;
use jitbridge::provisioning::AccountSnapshot;
use jitbridge::session::revocations::Queued;
use jitbridge::session::{SessionId, SessionRecord, SessionStore, Timeouts, revocations, unix_now};
use std::time::Duration;

fn record(account: &str) -> SessionRecord {
    SessionRecord {
        account: AccountSnapshot {
            id: account.into(),
            username: account.into(),
            email: None,
            display_name: None,
            roles: vec![],
            version: 0,
            // Made before snapshots existed: served from its own copy without one.
            revision: None,
            role_ends: Vec::new(),
        },
        connection: "c".into(),
        subject: account.into(),
        idp_session: None,
        idp_principal: None,
        idp_logout_ref: None,
        created_at: unix_now(),
        expires_at: unix_now() + 3600,
    }
}

/// Waits up to `limit` for the session to be gone; whether it is.
async fn gone_within(sessions: &SessionStore, id: &SessionId, limit: Duration) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if sessions.get(id).await.unwrap().is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Regression: the follower polled `id > last`. On PostgreSQL an id is taken when the row is
/// inserted, not when it commits, so a long transaction (a CLI sweep) that took id k and
/// committed after id k+1 had been seen was skipped forever. Here transaction A takes id k and
/// stays open, B takes k+1 and commits, the follower applies B, then A commits: A's revocation
/// must still end the session in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_committed_after_a_later_id_still_reaches_in_process_sessions() {
    if !uses_postgres() {
        // SQLite has one writer at a time: ids commit in order, there is nothing to race.
        eprintln!("skipped: PostgreSQL only (JB_TEST_DB=postgres)");
        return;
    }
    let (_test_db, db) = library_db();
    let sessions = SessionStore::memory(Timeouts {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
    });
    let long_session = sessions.create(record("acc-long")).await.unwrap();
    let short_session = sessions.create(record("acc-short")).await.unwrap();
    let follower = tokio::spawn(revocations::follow_until_stopped(
        db.clone(),
        sessions.clone(),
        Duration::from_secs(600),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut long = db.get().unwrap();
    long.batch_execute("BEGIN").unwrap();
    revocations::queue(&mut long, "acc-long", Queued::Revoke { epoch: 1 }).unwrap();
    revocations::queue(
        &mut db.get().unwrap(),
        "acc-short",
        Queued::Revoke { epoch: 1 },
    )
    .unwrap();
    assert!(
        gone_within(&sessions, &short_session, Duration::from_secs(5)).await,
        "the follower applies the committed revocation"
    );
    long.batch_execute("COMMIT").unwrap();
    let reached = gone_within(&sessions, &long_session, Duration::from_secs(5)).await;
    follower.abort();
    assert!(
        reached,
        "the revocation committed out of id order was skipped"
    );
}

/// The window is re-read every second: an entry applied once must not be applied again, or an
/// account disabled and enabled again within the window would lose every new session at each
/// poll until the entry leaves the window.
#[tokio::test]
async fn an_applied_revocation_does_not_end_sessions_created_after_it() {
    let (_test_db, db) = library_db();
    let sessions = SessionStore::memory(Timeouts {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
    });
    let mut follower = {
        let mut c = db.get().unwrap();
        revocations::Follower::start(&mut c, Duration::from_secs(600)).unwrap()
    };
    // The account exists (a follower takes a missing one for purged and ends its sessions).
    {
        use diesel::prelude::*;
        let at = jitbridge::db::now();
        diesel::insert_into(jitbridge::db::schema::accounts::table)
            .values(jitbridge::db::models::Account {
                id: "acc-again".into(),
                username: "again".into(),
                email: None,
                display_name: None,
                attributes: "{}".into(),
                status: "active".into(),
                disabled_reason: None,
                created_at: at,
                updated_at: at,
                last_login_at: None,
                disabled_at: None,
                version: 2,
                disabled_by: None,
                revision: 0,
            })
            .execute(&mut *db.get().unwrap())
            .unwrap();
    }
    let before = sessions.create(record("acc-again")).await.unwrap();
    revocations::queue(
        &mut db.get().unwrap(),
        "acc-again",
        Queued::Revoke { epoch: 1 },
    )
    .unwrap();
    let first = follower.poll_once(&db, &sessions).await.unwrap();
    assert_eq!((first.applied, first.sessions), (1, 1));
    assert!(sessions.get(&before).await.unwrap().is_none());

    // Re-enabled (version 2) and logged in again.
    let mut again = record("acc-again");
    again.account.version = 2;
    let after = sessions.create(again).await.unwrap();
    for _ in 0..3 {
        let again = follower.poll_once(&db, &sessions).await.unwrap();
        assert_eq!(again.applied, 0, "an applied entry is applied again");
    }
    assert!(sessions.get(&after).await.unwrap().is_some());
}

/// A follower started after a revocation was committed marked it applied without applying it:
/// with Redis, sessions outlive the process, so a sweeper killed between its commit and its
/// Redis revocation left those sessions alive for good. A new follower applies what the log
/// holds; a row queued before epochs existed (epoch 0, a rolling upgrade) ends every session.
#[tokio::test]
async fn a_follower_started_after_a_revocation_still_applies_it() {
    let (_test_db, db) = library_db();
    let sessions = SessionStore::memory(Timeouts {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
    });
    let mut early = record("acc-killed");
    early.account.version = 0;
    let s = sessions.create(early).await.unwrap();
    let mut legacy = record("acc-legacy");
    legacy.account.version = 7;
    let l = sessions.create(legacy).await.unwrap();
    // Committed by a process that died before revoking anywhere.
    revocations::queue(
        &mut db.get().unwrap(),
        "acc-killed",
        Queued::Revoke { epoch: 1 },
    )
    .unwrap();
    revocations::queue(
        &mut db.get().unwrap(),
        "acc-legacy",
        Queued::Revoke { epoch: 0 },
    )
    .unwrap();
    let mut follower = {
        let mut c = db.get().unwrap();
        revocations::Follower::start(&mut c, Duration::from_secs(600)).unwrap()
    };
    let first = follower.poll_once(&db, &sessions).await.unwrap();
    assert_eq!(first.applied, 2);
    assert!(
        sessions.get(&s).await.unwrap().is_none(),
        "applied at start"
    );
    assert!(
        sessions.get(&l).await.unwrap().is_none(),
        "a legacy row ends every session"
    );
}

/// A snapshot-only entry (a grant, an enable, a login that changed roles) delivers the
/// account's snapshot and ends nothing; a replay of the window delivers it again, which
/// repairs a store that lost it; a purged account's snapshot is forgotten.
#[tokio::test]
async fn snapshot_entries_deliver_the_account_and_a_replay_repairs_a_lost_one() {
    use jitbridge::lifecycle::roles::RoleChange;
    use jitbridge::mapping::RoleName;
    let (_test_db, db) = library_db();
    let sessions = SessionStore::memory(Timeouts {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(3600),
    });
    let key = jitbridge::provisioning::LoginKey {
        connection: crate::helpers::CONNECTION,
        subject: "snap-subject",
        request_id: None,
    };
    let p = jitbridge::provisioning::provision(
        &mut db.get().unwrap(),
        key,
        &crate::direct::profile("snap"),
        &Default::default(),
    )
    .unwrap();
    sessions.put_account(&p.state).await.unwrap();
    let mut rec = record(&p.account.id);
    rec.account = p.account.clone();
    let id = sessions.create(rec).await.unwrap();
    let mut follower = {
        let mut c = db.get().unwrap();
        revocations::Follower::start(&mut c, Duration::from_secs(600)).unwrap()
    };
    // Granted elsewhere (another process): only the log tells this store.
    let role = RoleName::parse("oncall").unwrap();
    jitbridge::accounts::change_role(
        &mut db.get().unwrap(),
        "snap",
        RoleChange::Grant {
            role: &role,
            until: None,
            reason: "test",
        },
        "test",
    )
    .unwrap();
    let first = follower.poll_once(&db, &sessions).await.unwrap();
    assert_eq!(
        (first.applied, first.sessions),
        (1, 0),
        "a grant ended sessions"
    );
    let live = sessions
        .get(&id)
        .await
        .unwrap()
        .expect("the session lives on");
    assert_eq!(live.account.roles, vec!["oncall", "staff"]);

    // The store loses the snapshot; a replay of the window brings it back.
    sessions.drop_account(&p.account.id).await.unwrap();
    follower.replay_window();
    let replayed = follower.poll_once(&db, &sessions).await.unwrap();
    assert_eq!(replayed.applied, 1);
    assert_eq!(
        sessions.get(&id).await.unwrap().map(|r| r.account.roles),
        Some(vec!["oncall".to_string(), "staff".to_string()])
    );
}
