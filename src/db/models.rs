//! Rows as diesel reads and writes them. Domain code turns them into its own types.

use super::schema::{account_roles, accounts, audit_events, identities};
use diesel::prelude::*;
use time::PrimitiveDateTime;

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_DISABLED: &str = "disabled";

/// No `AsChangeset` on purpose: writing a whole row back from an earlier read overwrites
/// columns other writers own (a login undid disables that way). Update the columns you own.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
pub struct Account {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub attributes: String,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub created_at: PrimitiveDateTime,
    pub updated_at: PrimitiveDateTime,
    pub last_login_at: Option<PrimitiveDateTime>,
    pub disabled_at: Option<PrimitiveDateTime>,
    /// The lifecycle version (see `lifecycle`): bumped by every status transition.
    pub version: i64,
    /// `directory`, `admin` or `idp` while disabled.
    pub disabled_by: Option<String>,
    /// The snapshot revision (see `session::snapshot`): bumped by every write that changes
    /// what a session shows or allows.
    pub revision: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = identities)]
pub struct Identity {
    pub connection: String,
    pub subject: String,
    pub account_id: String,
    pub created_at: PrimitiveDateTime,
    pub last_login_at: Option<PrimitiveDateTime>,
    pub last_seen_in_directory: Option<PrimitiveDateTime>,
    pub missing_since: Option<PrimitiveDateTime>,
    pub missing_count: i32,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = account_roles)]
pub struct AccountRole {
    pub account_id: String,
    pub role: String,
    pub source: String,
    pub granted_at: PrimitiveDateTime,
    pub expires_at: Option<PrimitiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub at: PrimitiveDateTime,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub account_id: Option<String>,
    pub connection: Option<String>,
    pub details: String,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    pub at: PrimitiveDateTime,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub account_id: Option<String>,
    pub connection: Option<String>,
    pub details: String,
    pub request_id: Option<String>,
}
