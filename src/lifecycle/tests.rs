use super::*;
use crate::config::Secret;
use crate::db::Db;
use crate::db::models::Account;

/// A fresh SQLite database with one active account `a1`.
fn db() -> (Db, tempfile_path::Path) {
    let path = tempfile_path::Path::new();
    let db = Db::connect_direct(&Secret::new(format!("sqlite://{}", path.0.display()))).unwrap();
    db.migrate().unwrap();
    let at = now();
    diesel::insert_into(accounts::table)
        .values(&Account {
            id: "a1".into(),
            username: "alice".into(),
            email: None,
            display_name: None,
            attributes: "{}".into(),
            status: STATUS_ACTIVE.into(),
            disabled_reason: None,
            created_at: at,
            updated_at: at,
            last_login_at: None,
            disabled_at: None,
            version: 0,
            disabled_by: None,
            revision: 0,
        })
        .execute(&mut *db.get().unwrap())
        .unwrap();
    (db, path)
}

mod tempfile_path {
    /// A database file path removed on drop.
    pub struct Path(pub std::path::PathBuf);
    impl Path {
        pub fn new() -> Self {
            Self(std::env::temp_dir().join(format!("jblife-{}.db", uuid::Uuid::new_v4().simple())))
        }
    }
    impl Drop for Path {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

const ADMIN: Origin<'static> = Origin {
    actor: "admin:test",
    connection: None,
};

fn apply(db: &Db, seen: &Seen, t: Transition<'_>) -> Applied {
    db.get()
        .unwrap()
        .write_transaction(|c| transition(c, "a1", seen, t, ADMIN, json!({})))
        .unwrap()
}

fn actions(db: &Db) -> Vec<String> {
    crate::audit::recent(&mut db.get().unwrap(), 100)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The sweeper read an account, an admin disabled it during the listing, then the sweep
/// applied its plan from the old read. A write from a stale read must change nothing.
#[test]
fn a_transition_from_a_stale_read_writes_nothing_and_is_audited() {
    let (db, _p) = db();
    let stale = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    assert_eq!(
        stale,
        Seen {
            active: true,
            disabled_by: None,
            version: 0
        }
    );
    let admin_disable = Transition::Disable {
        by: DisabledBy::Admin,
        reason: "left",
    };
    assert_eq!(
        apply(&db, &stale, admin_disable),
        Applied::Done { version: 1 }
    );
    // The sweep, from its read before the admin's disable, would disable it as the directory's
    // (later auto-reactivated) or re-enable it: neither happens.
    let sweep_disable = Transition::Disable {
        by: DisabledBy::Directory,
        reason: "gone from the directory",
    };
    for t in [sweep_disable, Transition::Enable] {
        match apply(&db, &stale, t) {
            Applied::Skipped { now: Some(now) } => {
                assert!(!now.active);
                assert_eq!(now.disabled_by, Some(DisabledBy::Admin));
            }
            other => panic!("{other:?}"),
        }
    }
    let now = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    assert_eq!(now.disabled_by, Some(DisabledBy::Admin));
    assert_eq!(now.version, 1);
    let a = actions(&db);
    assert_eq!(
        a.iter()
            .filter(|x| *x == "account.transition_skipped")
            .count(),
        2,
        "{a:?}"
    );
}

/// An admin's reason that starts with `directory:` made the sweeper treat the hold as its own.
#[test]
fn an_admin_disable_stays_an_admins_whatever_its_reason_says() {
    let (db, _p) = db();
    let seen = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    let t = Transition::Disable {
        by: DisabledBy::Admin,
        reason: "directory: gone from the directory",
    };
    assert!(matches!(apply(&db, &seen, t), Applied::Done { .. }));
    let now = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    assert_eq!(now.disabled_by, Some(DisabledBy::Admin));
}

/// An enable clears every disable column and bumps the version; a purge from a stale read
/// leaves the account alone.
#[test]
fn enable_clears_the_disable_and_a_stale_purge_keeps_the_account() {
    let (db, _p) = db();
    let seen = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    let disable = Transition::Disable {
        by: DisabledBy::Directory,
        reason: "gone",
    };
    assert!(matches!(apply(&db, &seen, disable), Applied::Done { .. }));
    let disabled = read(&mut db.get().unwrap(), "a1").unwrap().unwrap();
    assert!(matches!(
        apply(&db, &disabled, Transition::Enable),
        Applied::Done { version: 2 }
    ));
    let (reason, at, by): (Option<String>, Option<PrimitiveDateTime>, Option<String>) =
        accounts::table
            .find("a1")
            .select((
                accounts::disabled_reason,
                accounts::disabled_at,
                accounts::disabled_by,
            ))
            .first(&mut *db.get().unwrap())
            .unwrap();
    assert_eq!((reason, at, by), (None, None, None));
    let off = crate::usernames::Quarantine::off();
    let purge = Transition::Purge {
        mode: PurgeMode::Delete,
        quarantine: &off,
    };
    assert!(matches!(
        apply(&db, &disabled, purge),
        Applied::Skipped { .. }
    ));
    assert!(read(&mut db.get().unwrap(), "a1").unwrap().is_some());
}

/// A purge freed the username for the next person who asked for it. Both purge modes now hold
/// it for the purged account, as a keyed hash only.
#[test]
fn a_purge_holds_the_freed_username_for_the_purged_account_in_both_modes() {
    use crate::db::schema::username_quarantine;
    for mode in [PurgeMode::Delete, PurgeMode::Anonymize] {
        let (db, _p) = db();
        let mut c = db.get().unwrap();
        let cfg = crate::config::UsernameQuarantine::default();
        let quarantine = crate::usernames::Quarantine::open(&mut c, &cfg).unwrap();
        let seen = read(&mut c, "a1").unwrap().unwrap();
        let disable = Transition::Disable {
            by: DisabledBy::Directory,
            reason: "gone",
        };
        let mut apply = |seen: &Seen, t: Transition<'_>| {
            c.write_transaction(|c| transition(c, "a1", seen, t, ADMIN, json!({})))
                .unwrap()
        };
        assert!(matches!(apply(&seen, disable), Applied::Done { .. }));
        let purge = Transition::Purge {
            mode,
            quarantine: &quarantine,
        };
        let disabled = Seen {
            active: false,
            disabled_by: Some(DisabledBy::Directory),
            version: 1,
        };
        assert!(matches!(apply(&disabled, purge), Applied::Done { .. }));
        let held = quarantine.take(&mut c, "Alice", None, now()).unwrap();
        assert_eq!(
            held.map(|h| h.account_id).as_deref(),
            Some("a1"),
            "{mode:?}"
        );
        let rows: Vec<(String, String)> = username_quarantine::table
            .select((
                username_quarantine::name_hash,
                username_quarantine::account_id,
            ))
            .load(&mut *c)
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!format!("{rows:?}").contains("alice"), "{rows:?}");
        // The account that held it may take it back (a purged account never logs in again,
        // but a renamed one may).
        assert!(
            quarantine
                .take(&mut c, "alice", Some("a1"), now())
                .unwrap()
                .is_none()
        );
    }
}
