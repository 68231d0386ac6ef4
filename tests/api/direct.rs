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
