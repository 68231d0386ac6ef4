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
