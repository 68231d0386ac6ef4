//! The library without HTTP: a migrated database of the suite's backend, reached as the server
//! and the CLI reach it, so that threads can race on one account and the binary can be run
//! against a database the test prepared.

use crate::helpers::TestDb;
use jitbridge::db::Db;

pub fn library_db() -> (TestDb, Db) {
    let test_db = TestDb::new();
    let db = Db::connect(&jitbridge::config::Secret::new(&test_db.url), 4)
        .expect("the test database opens");
    db.migrate().expect("the test database migrates");
    (test_db, db)
}

pub fn profile(username: &str) -> jitbridge::mapping::Profile {
    jitbridge::mapping::Profile {
        username: username.into(),
        email: Some(jitbridge::mapping::VerifiedEmail::assume_verified(format!(
            "{username}@example.com"
        ))),
        display_name: Some(username.to_uppercase()),
        attributes: Default::default(),
        roles: ["staff".to_string()].into(),
        dropped_claims: vec![],
    }
}

/// A session of `account` as a login leaves it: an hour long, no IdP session.
pub fn session_of(
    account: jitbridge::provisioning::AccountSnapshot,
    subject: &str,
) -> jitbridge::session::SessionRecord {
    let now = jitbridge::session::unix_now();
    jitbridge::session::SessionRecord {
        account,
        connection: crate::helpers::CONNECTION.into(),
        subject: subject.into(),
        idp_session: None,
        idp_principal: None,
        idp_logout_ref: None,
        created_at: now,
        expires_at: now + 3600,
    }
}

/// A session store of the suite's kind (`JB_TEST_SESSIONS`), under a fresh Redis prefix.
pub async fn suite_store(
    timeouts: jitbridge::session::Timeouts,
) -> jitbridge::session::SessionStore {
    use jitbridge::session::SessionStore;
    if crate::helpers::uses_redis() {
        let prefix = format!("jbtest:{}:", uuid::Uuid::new_v4().simple());
        SessionStore::redis(&crate::helpers::redis_url(), &prefix, timeouts)
            .await
            .unwrap()
    } else {
        SessionStore::memory(timeouts)
    }
}

/// The snapshot a login delivers is built from what provisioning wrote (without reading the
/// account back): it must be the snapshot the database holds at that revision, which every
/// other writer and the outbox follower read with `snapshot::load`. Checked through a first
/// login, a claim role dropped and added, a rename, and an administrator's lasting, temporary
/// and ended grants.
#[test]
fn the_snapshot_a_login_builds_is_the_one_the_database_holds() {
    use jitbridge::lifecycle::roles::RoleChange;
    use jitbridge::mapping::RoleName;
    let (_test_db, db) = library_db();
    let mut c = db.get().unwrap();
    let key = jitbridge::provisioning::LoginKey {
        connection: crate::helpers::CONNECTION,
        subject: "snap-subject",
        request_id: None,
    };
    let renames = jitbridge::config::UsernamePolicy {
        update: true,
        ..Default::default()
    };
    let login = |c: &mut jitbridge::db::DbConnection, p: &jitbridge::mapping::Profile| {
        let done = jitbridge::provisioning::provision(c, key, p, &renames).unwrap();
        let held = jitbridge::session::snapshot::load(c, &done.account.id)
            .unwrap()
            .unwrap();
        assert_eq!(done.state, held, "after {:?}", p.roles);
        assert_eq!(done.account.revision, Some(held.revision));
        done
    };
    let mut p = profile("snap");
    let first = login(&mut c, &p);
    assert_eq!(first.state.revision, 0);
    let grant = |c: &mut jitbridge::db::DbConnection, role: &str, until| {
        let role = RoleName::parse(role).unwrap();
        jitbridge::accounts::change_role(
            c,
            "snap",
            RoleChange::Grant {
                role: &role,
                until,
                reason: "test",
            },
            "test",
        )
        .unwrap();
    };
    let now = jitbridge::db::now();
    grant(&mut c, "oncall", None);
    grant(&mut c, "staff", Some(now + time::Duration::hours(1)));
    grant(&mut c, "auditor", Some(now + time::Duration::hours(2)));
    // An ended grant is in the table and in no snapshot.
    grant(&mut c, "expired", Some(now - time::Duration::hours(1)));
    p.roles = ["admins".to_string(), "zeta".to_string()].into();
    p.username = "snap-renamed".into();
    p.display_name = None;
    let second = login(&mut c, &p);
    assert!(second.state.revision > first.state.revision);
    let names: Vec<&str> = second.state.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["admins", "auditor", "oncall", "staff", "zeta"]);
    assert_eq!(second.state.username, "snap-renamed");
    p.roles = ["staff".to_string()].into();
    let third = login(&mut c, &p);
    let staff: Vec<_> = third
        .state
        .roles
        .iter()
        .filter(|r| r.name == "staff")
        .collect();
    assert_eq!(
        staff.len(),
        2,
        "the claim role and the temporary grant: {staff:?}"
    );
}

/// The generated username-hash key a server keeps after its first read: generated on first
/// use, the same key the database holds (so a hold one process made is found by another), and
/// still checked beside a key configured later.
#[test]
fn the_generated_username_key_kept_by_a_server_is_the_databases() {
    use jitbridge::config::{Secret, UsernameQuarantine};
    use jitbridge::usernames::{GeneratedKey, Quarantine};
    let (_test_db, db) = library_db();
    let mut c = db.get().unwrap();
    let generated = UsernameQuarantine::default();
    let now = jitbridge::db::now();
    let known = GeneratedKey::default();
    // First use: nothing generated yet.
    let q = Quarantine::open_cached(&mut c, &generated, &known).unwrap();
    q.hold(&mut c, "Bob", "acc-1", now).unwrap();
    // Another process (its own cache), and this one again from its cache.
    for q in [
        Quarantine::open_cached(&mut c, &generated, &GeneratedKey::default()).unwrap(),
        Quarantine::open_cached(&mut c, &generated, &known).unwrap(),
        Quarantine::open(&mut c, &generated).unwrap(),
    ] {
        let held = q.take(&mut c, "bob", None, now).unwrap();
        assert_eq!(held.map(|h| h.account_id).as_deref(), Some("acc-1"));
    }
    // A key configured later: new holds use it, the generated key's holds still count.
    let configured = UsernameQuarantine {
        hash_key: Some(Secret::new("k".repeat(40))),
        ..Default::default()
    };
    let q = Quarantine::open_cached(&mut c, &configured, &GeneratedKey::default()).unwrap();
    assert!(q.take(&mut c, "BOB", None, now).unwrap().is_some());
    q.hold(&mut c, "carol", "acc-2", now).unwrap();
    let q = Quarantine::open_cached(&mut c, &configured, &known).unwrap();
    assert!(q.take(&mut c, "carol", None, now).unwrap().is_some());
}
