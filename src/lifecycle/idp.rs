//! "The identity provider ended this session", on the apply path: OIDC back-channel logout and
//! SAML IdP-initiated logout name IdP sessions (a `sid`, SessionIndexes with a NameID) or a
//! person, and the matching sessions end at once. The protocol adapter has turned what the
//! IdP named into protocol-neutral terms: an IdP session id, a subject, or a principal (the
//! adapter's canonical form of a NameID, see `idp::IdpPrincipal`).
//!
//! An IdP ending a session is not an account-wide event: it ends only the sessions it names
//! (never other devices of the person when it names a session), the account stays as it is,
//! and no epoch moves, so the person may log in again at once.

use crate::db::schema::identities;
use crate::db::{Db, DbConnection, DbError};
use crate::session::{SessionError, SessionStore};
use diesel::prelude::*;

/// What the IdP says ended.
#[derive(Debug, Clone, Copy)]
pub enum IdpEnded<'a> {
    /// An OIDC back-channel logout token with a `sid`: that IdP session.
    OidcSession { sid: &'a str },
    /// An OIDC back-channel logout token with only a `sub`: every session of the person.
    Subject { subject: &'a str },
    /// A SAML LogoutRequest with SessionIndexes: the sessions of this principal (its NameID)
    /// with those indexes (core 3.7.3.2); an index that belongs to somebody else ends nothing.
    PrincipalSessions {
        principal: &'a str,
        session_indexes: &'a [String],
    },
    /// A SAML LogoutRequest without SessionIndex: every session established with the
    /// principal (its NameID), and every session of the account of `subject` (given when the
    /// NameID is the connection's subject).
    Principal {
        principal: &'a str,
        subject: Option<&'a str>,
    },
}

/// Why the sessions an IdP names could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum EndError {
    #[error("cannot end the sessions")]
    Sessions(#[from] SessionError),
    #[error("cannot find the account of the subject")]
    Database(#[from] DbError),
}

/// Ends the sessions of `connection` that `what` names; returns how many there were.
pub async fn end_idp_sessions(
    db: &Db,
    sessions: &SessionStore,
    connection: &str,
    what: IdpEnded<'_>,
) -> Result<usize, EndError> {
    match what {
        IdpEnded::OidcSession { sid } => Ok(sessions.revoke_idp_session(connection, sid).await?),
        IdpEnded::Subject { subject } => {
            Ok(end_for_subject(db, sessions, connection, subject).await?)
        }
        IdpEnded::PrincipalSessions {
            principal,
            session_indexes,
        } => {
            let mut n = 0;
            for si in session_indexes {
                n += sessions
                    .revoke_principal_session(connection, si, principal)
                    .await?;
            }
            Ok(n)
        }
        IdpEnded::Principal { principal, subject } => {
            let n = sessions.revoke_principal(connection, principal).await?;
            let m = match subject {
                Some(subject) => end_for_subject(db, sessions, connection, subject).await?,
                None => 0,
            };
            Ok(n + m)
        }
    }
}

async fn end_for_subject(
    db: &Db,
    sessions: &SessionStore,
    connection: &str,
    subject: &str,
) -> Result<usize, EndError> {
    let (c, s) = (connection.to_string(), subject.to_string());
    match db.run(move |db| account_of(db, &c, &s)).await? {
        Some(account) => Ok(sessions.revoke_account(&account, None).await?),
        None => Ok(0),
    }
}

fn account_of(
    c: &mut DbConnection,
    connection: &str,
    subject: &str,
) -> Result<Option<String>, DbError> {
    Ok(identities::table
        .find((connection, subject))
        .select(identities::account_id)
        .get_result(c)
        .optional()?)
}
