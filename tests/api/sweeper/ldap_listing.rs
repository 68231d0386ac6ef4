//! LDAP listings that are not the whole directory: search references (referrals) and entries
//! whose subject attribute is missing or unreadable. Against a private slapd.

use super::ldap::{Slapd, app_with_ldap};
use super::*;
use crate::helpers::*;
use jitbridge::sweeper::SweepOutcome;
use ldap3::Mod;
use std::collections::HashSet;

fn set(v: &str) -> HashSet<String> {
    HashSet::from([v.to_string()])
}

impl Slapd {
    /// A referral object under the search base: a search without ManageDsaIT answers it with a
    /// search reference (RFC 4511 §4.5.3), as AD does for child domains.
    pub async fn add_referral(&self, cn: &str, url: &str) {
        let mut ldap = self.admin().await;
        ldap.add(
            &format!("cn={cn},ou=people,dc=example,dc=org"),
            vec![
                (
                    "objectClass".to_string(),
                    HashSet::from(["referral".to_string(), "extensibleObject".to_string()]),
                ),
                ("cn".to_string(), set(cn)),
                ("ref".to_string(), set(url)),
            ],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }

    /// A person named by cn, so that its subject attribute (uid) can be taken away.
    pub async fn add_person_by_cn(&self, cn: &str, uid: Option<&str>) {
        let mut ldap = self.admin().await;
        let mut attrs = vec![
            (
                "objectClass".to_string(),
                HashSet::from(["inetOrgPerson".to_string(), "adUserLite".to_string()]),
            ),
            ("cn".to_string(), set(cn)),
            ("sn".to_string(), set(cn)),
            ("userAccountControl".to_string(), set("512")),
        ];
        if let Some(uid) = uid {
            attrs.push(("uid".to_string(), set(uid)));
        }
        ldap.add(&format!("cn={cn},ou=people,dc=example,dc=org"), attrs)
            .await
            .unwrap()
            .success()
            .unwrap();
    }

    pub async fn remove_uid(&self, cn: &str) {
        let mut ldap = self.admin().await;
        ldap.modify(
            &format!("cn={cn},ou=people,dc=example,dc=org"),
            vec![Mod::Delete("uid".to_string(), HashSet::new())],
        )
        .await
        .unwrap()
        .success()
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ldap_search_reference_to_a_child_domain_made_its_people_look_gone() {
    let slapd = Slapd::start();
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    for s in ["alice", "bob"] {
        assert_eq!(app.login(&Browser::new(), s).await.status(), 302);
    }
    // carl lives in the child domain: the parent only refers to it.
    provision(&app, "carl").await;
    slapd
        .add_referral(
            "child",
            "ldap://child.example.org/ou=people,dc=child,dc=example,dc=org",
        )
        .await;
    let r = sweep(&app, SweepOptions::default()).await;
    let SweepOutcome::Aborted(reason) = &r.outcome else {
        panic!(
            "a search reference was read as a complete listing: {:?} {:?}",
            r.outcome, r.plan
        )
    };
    assert!(reason.contains("ldap://child.example.org/"), "{reason}");
    assert_eq!(status(&app, "carl").await, "active");
    let events = app.audit_events().await;
    assert!(!events.iter().any(|e| e.action == "account.missing"));
    assert!(events.iter().any(|e| e.action == "sweep.aborted"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ldap_entry_without_the_subject_attribute_made_that_person_look_gone() {
    let slapd = Slapd::start();
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    for s in ["alice", "bob"] {
        assert_eq!(app.login(&Browser::new(), s).await.status(), 302);
    }
    slapd.add_person_by_cn("Zed Zimmer", Some("zed")).await;
    provision(&app, "zed").await;
    assert_eq!(
        sweep(&app, SweepOptions::default()).await.outcome,
        SweepOutcome::Applied
    );
    // An ACL change, a schema change or a bad import: zed's entry is there, its uid is not.
    slapd.remove_uid("Zed Zimmer").await;
    let r = sweep(&app, SweepOptions::default()).await;
    let SweepOutcome::Aborted(reason) = &r.outcome else {
        panic!(
            "an entry without uid was skipped silently: {:?} {:?}",
            r.outcome, r.plan
        )
    };
    assert!(reason.contains("without the subject attribute"), "{reason}");
    assert_eq!(status(&app, "zed").await, "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn references_that_hold_nobody_are_ignored_by_pattern_and_no_others() {
    let slapd = Slapd::start();
    slapd
        .add_referral(
            "DomainDnsZones",
            "ldap://DomainDnsZones.example.org/DC=DomainDnsZones,DC=example,DC=org",
        )
        .await;
    // The default list ignores AD's application partitions.
    let app = app_with_ldap(&slapd, "grace_sweeps = 1").await;
    provision(&app, "alice").await;
    let r = sweep(&app, SweepOptions::default()).await;
    assert_eq!(r.outcome, SweepOutcome::Applied, "{:?}", r.plan);
    // A list of one's own replaces the defaults.
    let conn = app.state.config.connection(CONNECTION).unwrap().clone();
    let mut dir = conn.directory.clone().unwrap();
    if let jitbridge::config::DirectorySourceConfig::Ldap(l) = &mut dir.source {
        l.ignore_references = vec!["ldap://legacy.example.org/*".into()];
    }
    let r = sweep_with(
        &app,
        Directory::open(&dir).unwrap(),
        SweepOptions::default(),
    )
    .await;
    assert!(
        matches!(r.outcome, SweepOutcome::Aborted(_)),
        "{:?}",
        r.outcome
    );
    slapd
        .add_referral("legacy", "ldap://legacy.example.org/ou=people,dc=legacy")
        .await;
    if let jitbridge::config::DirectorySourceConfig::Ldap(l) = &mut dir.source {
        l.ignore_references
            .push("ldap://*/DC=DomainDnsZones,*".into());
    }
    let r = sweep_with(
        &app,
        Directory::open(&dir).unwrap(),
        SweepOptions::default(),
    )
    .await;
    assert_eq!(r.outcome, SweepOutcome::Applied);
}

#[tokio::test(flavor = "multi_thread")]
async fn tolerated_entries_without_the_subject_attribute_are_counted_and_audited() {
    let slapd = Slapd::start();
    slapd.add_person_by_cn("Front Desk Printer", None).await;
    let app = app_with_ldap(&slapd, "grace_sweeps = 1\nmax_entries_without_subject = 1").await;
    provision(&app, "alice").await;
    let r = sweep(&app, SweepOptions::default()).await;
    assert_eq!(r.outcome, SweepOutcome::Applied, "{:?}", r.plan);
    assert_eq!(r.plan.unwrap().without_subject, 1);
    let noted = app
        .audit_events()
        .await
        .into_iter()
        .find(|e| e.action == "sweep.entries_without_subject")
        .expect("audited");
    assert!(noted.details.contains("\"count\":1"), "{}", noted.details);
}
