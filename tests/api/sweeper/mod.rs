//! The deprovisioning sweeper against real directories: Debian's slapd and PyPI's scim2-server.

mod fault_proxy;
mod gates;
pub(crate) mod ldap;
mod ldap_listing;
mod races;
mod safety;
mod scim;
mod scim_paging;

use crate::helpers::TestApp;
use jitbridge::directory::{Directory, DirectorySource};
use jitbridge::sweeper::{self, SweepOptions, SweepReport};

/// For tests that feed the sweeper their own listing: the configured directory is never asked.
pub const UNUSED_PORT: u16 = 1;

/// A listing of these subjects, all active, two per page.
pub fn listing(subjects: &[&str]) -> jitbridge::directory::MemorySource {
    jitbridge::directory::MemorySource::new(
        subjects
            .iter()
            .map(|s| jitbridge::directory::DirectoryEntry {
                subject: s.to_string(),
                active: true,
            })
            .collect(),
        2,
    )
}

pub async fn sweep(app: &TestApp, opts: SweepOptions) -> SweepReport {
    let conn = app
        .state
        .config
        .connection(crate::helpers::CONNECTION)
        .unwrap()
        .clone();
    let source = Directory::open(conn.directory.as_ref().unwrap()).unwrap();
    sweeper::sweep_once(
        &app.state.db,
        Some(&app.state.sessions),
        &conn,
        source,
        opts,
    )
    .await
    .unwrap()
}

pub async fn sweep_with<S: DirectorySource>(
    app: &TestApp,
    source: S,
    opts: SweepOptions,
) -> SweepReport {
    let conn = app
        .state
        .config
        .connection(crate::helpers::CONNECTION)
        .unwrap()
        .clone();
    sweeper::sweep_once(
        &app.state.db,
        Some(&app.state.sessions),
        &conn,
        source,
        opts,
    )
    .await
    .unwrap()
}

pub async fn status(app: &TestApp, username: &'static str) -> String {
    use diesel::prelude::*;
    use jitbridge::db::schema::accounts;
    app.db(move |c| {
        accounts::table
            .filter(accounts::username.eq(username))
            .select(accounts::status)
            .first::<String>(c)
            .unwrap()
    })
    .await
}

/// Creates a local account for `subject` the way a login would, without a browser.
pub async fn provision(app: &TestApp, subject: &str) {
    let subject = subject.to_string();
    app.db(move |c| {
        let profile = jitbridge::mapping::Profile {
            username: subject.clone(),
            email: Some(jitbridge::mapping::VerifiedEmail::assume_verified(format!(
                "{subject}@example.com"
            ))),
            display_name: None,
            attributes: Default::default(),
            roles: Default::default(),
            dropped_claims: vec![],
        };
        let key = jitbridge::provisioning::LoginKey {
            connection: crate::helpers::CONNECTION,
            subject: &subject,
            request_id: None,
        };
        jitbridge::provisioning::provision(c, key, &profile, &Default::default()).unwrap();
    })
    .await;
}
