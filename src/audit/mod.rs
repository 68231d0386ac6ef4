//! The audit trail: append-only events, written in the same transaction as the change they
//! describe (or on their own for refusals, which change nothing).
//!
//! Details carry names of changed fields, role changes and reasons; never tokens, assertions
//! or raw claims.

pub mod failures;

use crate::db::models::{AuditEvent, NewAuditEvent};
use crate::db::schema::audit_events;
use crate::db::{DbConnection, DbError, now};
use diesel::prelude::*;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Event {
    pub actor: String,
    pub action: &'static str,
    pub outcome: Outcome,
    pub account_id: Option<String>,
    pub connection: Option<String>,
    pub details: Value,
    pub request_id: Option<String>,
}

impl Event {
    pub fn new(action: &'static str, outcome: Outcome) -> Self {
        Self {
            actor: "system".into(),
            action,
            outcome,
            account_id: None,
            connection: None,
            details: Value::Object(Default::default()),
            request_id: None,
        }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = actor.into();
        self
    }

    pub fn account(mut self, id: impl Into<String>) -> Self {
        self.account_id = Some(id.into());
        self
    }

    pub fn connection(mut self, name: impl Into<String>) -> Self {
        self.connection = Some(name.into());
        self
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.request_id = id;
        self
    }
}

pub fn record(conn: &mut DbConnection, e: Event) -> Result<(), DbError> {
    let row = NewAuditEvent {
        at: now(),
        actor: e.actor,
        action: e.action.to_string(),
        outcome: match e.outcome {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
        .to_string(),
        account_id: e.account_id,
        connection: e.connection,
        details: e.details.to_string(),
        request_id: e.request_id,
    };
    diesel::insert_into(audit_events::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

/// The newest events first, for the CLI and tests.
pub fn recent(conn: &mut DbConnection, limit: i64) -> Result<Vec<AuditEvent>, DbError> {
    Ok(audit_events::table
        .order(audit_events::id.desc())
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)?)
}
