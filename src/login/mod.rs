//! The login service: the pipeline's middle, after a protocol adapter verified a login and
//! before a handler renders it. [`complete`] takes a protocol-neutral [`NormalizedLogin`]
//! through mapping, provisioning (one transaction, which also writes the `login.succeeded`,
//! `account.created` and `account.updated` audit events), the account's snapshot and a new
//! session; [`audit_refused`] writes the `login.failed` event of a refused login, whichever
//! stage refused it (the adapter's checks or this service's).
//!
//! Nothing here knows HTTP or which protocol the login came from: web handlers parse the
//! request, call the adapter and this module, and render; the CLI and tests can call the same
//! functions.

use crate::audit::failures::FailureAggregator;
use crate::audit::{self, Event, Outcome};
use crate::config::Config;
use crate::db::Db;
use crate::idp::NormalizedLogin;
use crate::mapping::Refusal;
use crate::provisioning::{self, LoginKey, ProvisionError};
use crate::session::{SessionError, SessionId, SessionRecord, SessionStore, unix_now};
use crate::usernames::Quarantine;
use serde_json::json;

/// What the login service works with, borrowed from the server's shared state (or set up by
/// a test or a command).
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub config: &'a Config,
    pub db: &'a Db,
    pub sessions: &'a SessionStore,
    /// Refused logins, aggregated per reason, connection and minute (see `audit::failures`).
    pub failures: &'a FailureAggregator,
    /// The database's generated username-hash key, once read.
    pub username_key: &'a std::sync::Arc<crate::usernames::GeneratedKey>,
}

/// Why [`complete`] did not make a session. The web layer turns each into its own refusal
/// (message, status and reason code).
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("there is no connection named like this")]
    UnknownConnection,
    /// The adapter's single-use key was already recorded: the same response came twice.
    #[error("this login response was already used")]
    Replayed,
    #[error("the mapping refused the login")]
    Mapping(#[from] Refusal),
    #[error("provisioning refused or failed")]
    Provisioning(#[from] ProvisionError),
    #[error("the session store failed")]
    Sessions(#[from] SessionError),
}

/// The protocol-neutral end of every login: the adapter's single-use key recorded, mapping,
/// provisioning in one transaction, the account's snapshot, and a new session; the browser's
/// `previous` session (another account's, or a stale one) ends once the new one exists.
///
/// Replay: the adapter says what makes its response unique and for how long
/// ([`crate::idp::SingleUse`]: SAML builds the key from the assertion ID, see
/// `idp::saml::VerifiedResponse::into_login`), and the key is recorded here, in the session
/// store that replicas share, before anything else happens. The adapter stays free of store
/// I/O (its verification is pure, so fuzzing and benchmarks drive it alone), and the key's
/// bytes stay the adapter's, unchanged, so replicas of two releases agree on them.
#[tracing::instrument(skip_all, fields(connection = %login.connection))]
pub async fn complete(
    ctx: &Context<'_>,
    login: NormalizedLogin,
    previous: Option<SessionId>,
    request_id: &str,
) -> Result<SessionId, CompleteError> {
    if let Some(once) = &login.single_use
        && !ctx.sessions.first_use(&once.key, once.ttl).await?
    {
        return Err(CompleteError::Replayed);
    }
    let connection = login.connection.as_str();
    let conn_cfg = ctx
        .config
        .connection(connection)
        .ok_or(CompleteError::UnknownConnection)?;
    let (mapping, usernames) = (conn_cfg.mapping.clone(), conn_cfg.usernames.clone());
    let profile = mapping.apply(&login.claims)?;
    let (conn_name, subject, rid) = (
        connection.to_string(),
        login.subject.clone(),
        request_id.to_string(),
    );
    let known_key = ctx.username_key.clone();
    let provisioned = ctx
        .db
        .run(move |c| {
            let quarantine = Quarantine::open_cached(c, &usernames.quarantine, &known_key)?;
            provisioning::provision_with(
                c,
                LoginKey {
                    connection: &conn_name,
                    subject: &subject,
                    request_id: Some(&rid),
                },
                &profile,
                usernames.update,
                &quarantine,
            )
        })
        .await?;
    tracing::info!(
        account = %provisioned.account.id,
        created = provisioned.created,
        changed = ?provisioned.changed_fields,
        "login succeeded"
    );
    // The account's current identity and roles for every live session of it (other devices
    // too), before this session exists: a newer snapshot already stored (a disable or a role
    // change that committed after this login) is kept.
    ctx.sessions.put_account(&provisioned.state).await?;
    let now = unix_now();
    let (idp_principal, idp_logout_ref) = match login.idp_principal {
        Some(p) => (Some(p.key), Some(p.logout_ref)),
        None => (None, None),
    };
    let record = SessionRecord {
        account: provisioned.account,
        connection: login.connection,
        subject: login.subject,
        idp_session: login.idp_session,
        idp_principal,
        idp_logout_ref,
        created_at: now,
        // The IdP may want its session over sooner (SAML SessionNotOnOrAfter).
        expires_at: (now + ctx.config.sessions.absolute_timeout.as_secs() as i64)
            .min(login.session_ends_at.unwrap_or(i64::MAX)),
    };
    let id = ctx.sessions.create(record).await?;
    // A browser holds one session: a previous one (another account, or a stale one) ends here.
    if let Some(old) = previous {
        ctx.sessions.delete(&old).await?;
    }
    Ok(id)
}

/// A refused login, as the audit trail keeps it.
pub struct Refused<'a> {
    /// The stable reason code.
    pub reason: &'static str,
    /// The message the person was shown (never a token or a claim value).
    pub message: &'a dyn std::fmt::Display,
    /// The account the refusal is about (a disabled one, or one a username is held for).
    pub account_id: Option<&'a str>,
    /// The connection named by the request, configured or not.
    pub connection: Option<&'a str>,
}

/// Records a refused or failed login in the audit trail (`login.failed`). A failure to write
/// it is logged, not returned: the person's answer is the refusal either way.
pub async fn audit_refused(ctx: &Context<'_>, refused: Refused<'_>, request_id: &str) {
    // A name from the URL is the caller's to choose: only a configured one is recorded.
    let connection = refused
        .connection
        .filter(|c| ctx.config.connection(c).is_some());
    let reason = refused.reason;
    // The first refusal of its kind this minute is written in full; the rest are counted and
    // written as one event when the minute is over (audit::failures), so junk cannot grow
    // the trail without bound.
    // A refusal of a known account (it is disabled, or holds the name) came through the IdP:
    // kept in full.
    let of_an_account = refused.account_id.is_some();
    if !of_an_account
        && !ctx
            .failures
            .note("login.failed", reason, connection, unix_now())
    {
        tracing::debug!(reason, request_id, "login refused (repeat)");
        return;
    }
    tracing::info!(reason, connection, request_id, "login refused");
    let mut e = Event::new("login.failed", Outcome::Failure)
        .actor("anonymous")
        .details(json!({ "reason": reason, "message": refused.message.to_string() }))
        .request_id(Some(request_id.to_string()));
    if let Some(c) = connection {
        e = e.connection(c);
    }
    if let Some(account_id) = refused.account_id {
        e = e.account(account_id);
    }
    if let Err(db) = ctx.db.run(move |c| audit::record(c, e)).await {
        tracing::error!(error = %db, "could not write the audit event of a refused login");
    }
}
