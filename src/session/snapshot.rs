//! The account snapshot: what every check of a session must know about its account now, kept
//! in the session store beside the sessions (status, identity, roles with their expiry).
//!
//! A session record holds a copy of the account made at login; `/auth/verify` reads the
//! account's snapshot in the same round trip and lets it win: a disabled account is refused,
//! and the identity and roles shown are the account's current ones, so an admin's role change
//! reaches live sessions at once and a temporary grant stops counting the second it expires
//! (the snapshot carries each grant's end, checked at every request).
//!
//! Snapshots are written after the database commit (the login that provisioned, the apply path
//! after a grant, a revoke or a transition, and the outbox follower on every server), each
//! stamped with the account's `revision`, which every such write bumps under the account's row
//! lock. A store keeps a snapshot only when it is at least as new as the one it holds, so
//! deliveries that arrive out of order (a slow login behind an admin's change) never bring an
//! older state back.

use crate::db::models::STATUS_ACTIVE;
use crate::db::schema::{account_roles, accounts};
use crate::db::{DbConnection, DbError};
use crate::provisioning::AccountSnapshot;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use time::PrimitiveDateTime;

/// What a check does with a session, given its account's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it, brought up to date from the snapshot when there is one.
    Apply,
    /// Refuse it (and end it), for this reason.
    Refuse(&'static str),
}

/// Judges a session (its account copy) against the store's snapshot of its account. A session
/// made since snapshots exist names the revision it was made at: then a missing snapshot, or
/// one older than the session, means the store lost what it was told (a write lost in a
/// failover, an unreadable value), and nothing it holds would show a role removed or a grant
/// ended since, so the session is refused (fail closed; a new login writes a new snapshot).
/// Records from before snapshots existed (no revision) are served from their own copy when
/// there is no snapshot.
pub fn judge(account: &AccountSnapshot, state: Option<&AccountState>) -> Verdict {
    match (state, account.revision) {
        (Some(s), _) if s.id != account.id => Verdict::Refuse("snapshot of another account"),
        (Some(s), _) if !s.active => Verdict::Refuse("account disabled"),
        (Some(s), Some(made_at)) if s.revision < made_at => {
            Verdict::Refuse("snapshot older than the session")
        }
        (None, Some(_)) => Verdict::Refuse("no snapshot of the account"),
        (Some(_), _) | (None, None) => Verdict::Apply,
    }
}

/// An account's snapshot (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    pub id: String,
    /// The account's `revision` when this was read from the database.
    pub revision: i64,
    pub active: bool,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub roles: Vec<Role>,
}

/// A role the account holds, with the end of a temporary grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Unix seconds after which the role no longer counts; `None` for no end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

impl AccountState {
    /// The snapshot of an account that is gone (purged): disabled, without any personal value,
    /// at the highest revision, so that nothing replaces it.
    pub fn tombstone(account_id: &str) -> Self {
        Self {
            id: account_id.to_string(),
            revision: i64::MAX,
            active: false,
            username: String::new(),
            email: None,
            display_name: None,
            roles: Vec::new(),
        }
    }

    /// The role names that count at `now` (unix seconds), in order, without duplicates.
    pub fn roles_at(&self, now: i64) -> Vec<String> {
        let mut out: Vec<String> = self
            .roles
            .iter()
            .filter(|r| r.until.is_none_or(|until| now < until))
            .map(|r| r.name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The roles that count at `now` and end, each with its end: the latest end of its grants,
    /// and a role with a grant that does not end is not listed.
    pub fn role_ends_at(&self, now: i64) -> Vec<(String, i64)> {
        let mut ends: Vec<(String, i64)> = Vec::new();
        // The usual account (every check of its sessions comes here): nothing ends.
        if self.roles.iter().all(|r| r.until.is_none()) {
            return ends;
        }
        for name in self.roles_at(now) {
            let mut end = Some(i64::MIN);
            for r in self.roles.iter().filter(|r| r.name == name) {
                end = match (end, r.until) {
                    (Some(e), Some(u)) => Some(e.max(u)),
                    _ => None,
                };
            }
            if let Some(e) = end {
                ends.push((name, e));
            }
        }
        ends
    }

    /// The session's copy of the account as it stands now: identity and roles from the
    /// snapshot; the session's epoch (the version it was made at) stays the session's own.
    pub fn apply_to(&self, account: &mut AccountSnapshot, now: i64) {
        account.username.clone_from(&self.username);
        account.email.clone_from(&self.email);
        account.display_name.clone_from(&self.display_name);
        account.roles = self.roles_at(now);
        account.role_ends = self.role_ends_at(now);
    }

    /// The stored form: the revision first, so that a store can compare without decoding JSON.
    pub(super) fn encode(&self) -> String {
        format!(
            "{} {}",
            self.revision,
            serde_json::to_string(self).expect("account snapshot serializes")
        )
    }

    /// Reads [`Self::encode`]'s output; `None` for anything else (then the session's own copy
    /// is all there is, as before snapshots existed).
    pub(super) fn decode(raw: &str) -> Option<Self> {
        let (_, json) = raw.split_once(' ')?;
        serde_json::from_str(json).ok()
    }
}

/// The account's snapshot as the database holds it now; `None` when the account is gone. Read
/// inside the transaction that changed the account (under its row lock), or after its commit.
pub fn load(c: &mut DbConnection, account_id: &str) -> Result<Option<AccountState>, DbError> {
    let row: Option<Row> = accounts::table
        .find(account_id)
        .select((
            accounts::status,
            accounts::revision,
            accounts::username,
            accounts::email,
            accounts::display_name,
        ))
        .get_result(c)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let grants: Vec<(String, Option<PrimitiveDateTime>)> = account_roles::table
        .filter(account_roles::account_id.eq(account_id))
        .select((account_roles::role, account_roles::expires_at))
        .load(c)?;
    Ok(Some(from_rows(account_id, row, grants, crate::db::now())))
}

/// The account columns a snapshot holds: status, revision, username, email, display name.
pub type Row = (String, i64, String, Option<String>, Option<String>);

/// The snapshot of an account from its row and its grants (role, end) as the database holds
/// them: the one definition behind [`load`], and behind provisioning, which has both at hand
/// under the row lock. Grants that ended by `now` are left out; the roles are in byte order.
pub fn from_rows(
    account_id: &str,
    (status, revision, username, email, display_name): Row,
    grants: impl IntoIterator<Item = (String, Option<PrimitiveDateTime>)>,
    now: PrimitiveDateTime,
) -> AccountState {
    let mut roles: Vec<Role> = grants
        .into_iter()
        .filter(|(_, until)| until.is_none_or(|t| t > now))
        .map(|(name, until)| Role {
            name,
            until: until.map(|t| t.assume_utc().unix_timestamp()),
        })
        .collect();
    roles.sort_by(|a, b| (&a.name, a.until).cmp(&(&b.name, b.until)));
    AccountState {
        id: account_id.to_string(),
        revision,
        active: status == STATUS_ACTIVE,
        username,
        email,
        display_name,
        roles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(roles: Vec<Role>) -> AccountState {
        AccountState {
            id: "a1".into(),
            revision: 7,
            active: true,
            username: "alice".into(),
            email: Some("alice@example.com".into()),
            display_name: None,
            roles,
        }
    }

    #[test]
    fn a_role_ends_at_its_latest_grant_and_not_at_all_with_a_lasting_one() {
        let r = |name: &str, until: Option<i64>| Role {
            name: name.into(),
            until,
        };
        let s = state(vec![
            r("admin", Some(100)),
            r("admin", Some(200)),
            r("staff", Some(50)),
            r("staff", None),
            r("gone", Some(10)),
            r("wiki", None),
        ]);
        assert_eq!(s.role_ends_at(20), vec![("admin".to_string(), 200)]);
        assert_eq!(s.role_ends_at(200), Vec::<(String, i64)>::new());
    }

    #[test]
    fn a_temporary_grant_counts_until_its_end_and_not_a_second_longer() {
        let s = state(vec![
            Role {
                name: "admin".into(),
                until: Some(100),
            },
            Role {
                name: "staff".into(),
                until: None,
            },
        ]);
        assert_eq!(s.roles_at(99), vec!["admin", "staff"]);
        assert_eq!(s.roles_at(100), vec!["staff"]);
    }

    #[test]
    fn the_stored_form_round_trips_and_starts_with_the_revision() {
        let s = state(vec![Role {
            name: "staff".into(),
            until: None,
        }]);
        let raw = s.encode();
        assert!(raw.starts_with("7 {"), "{raw}");
        assert_eq!(AccountState::decode(&raw), Some(s));
        assert_eq!(AccountState::decode("garbage"), None);
        assert_eq!(AccountState::decode("7 {not json"), None);
    }

    #[test]
    fn the_snapshot_wins_over_the_sessions_copy_except_for_its_epoch() {
        let mut copy = AccountSnapshot {
            id: "a1".into(),
            username: "old".into(),
            email: None,
            display_name: Some("Old".into()),
            roles: vec!["removed".into()],
            version: 3,
            revision: Some(7),
            role_ends: Vec::new(),
        };
        state(vec![Role {
            name: "staff".into(),
            until: None,
        }])
        .apply_to(&mut copy, 0);
        assert_eq!(copy.username, "alice");
        assert_eq!(copy.email.as_deref(), Some("alice@example.com"));
        assert_eq!(copy.display_name, None);
        assert_eq!(copy.roles, vec!["staff"]);
        assert_eq!(copy.version, 3);
    }

    fn copy(revision: Option<i64>) -> AccountSnapshot {
        AccountSnapshot {
            id: "a1".into(),
            username: "alice".into(),
            email: None,
            display_name: None,
            roles: vec!["r".into()],
            version: 0,
            revision,
            role_ends: Vec::new(),
        }
    }

    #[test]
    fn a_session_whose_snapshot_is_missing_or_older_is_refused_unless_it_predates_snapshots() {
        let s = state(vec![]);
        assert_eq!(judge(&copy(Some(7)), Some(&s)), Verdict::Apply);
        assert_eq!(judge(&copy(Some(6)), Some(&s)), Verdict::Apply);
        assert!(matches!(
            judge(&copy(Some(8)), Some(&s)),
            Verdict::Refuse(_)
        ));
        assert!(matches!(judge(&copy(Some(0)), None), Verdict::Refuse(_)));
        assert_eq!(judge(&copy(None), None), Verdict::Apply);
        assert_eq!(judge(&copy(None), Some(&s)), Verdict::Apply);
        let off = AccountState {
            active: false,
            ..s.clone()
        };
        assert!(matches!(judge(&copy(None), Some(&off)), Verdict::Refuse(_)));
        let other = AccountState {
            id: "a2".into(),
            ..s
        };
        assert!(matches!(
            judge(&copy(Some(1)), Some(&other)),
            Verdict::Refuse(_)
        ));
    }

    /// The Redis store finds the account id with a pattern on the start of the record: pin the
    /// shape serde writes.
    #[test]
    fn a_serialized_session_record_starts_with_its_account_id() {
        let record = crate::session::SessionRecord {
            account: copy(Some(1)),
            connection: "c".into(),
            subject: "s".into(),
            idp_session: None,
            idp_principal: None,
            idp_logout_ref: None,
            created_at: 0,
            expires_at: 1,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.starts_with(r#"{"account":{"id":"a1","#), "{json}");
    }
}
