//! The login service without HTTP: what a protocol adapter hands on becomes a session through
//! the same code the handlers call, and the adapter's single-use key is honoured.

use crate::helpers::{CONNECTION, spawn_app};
use jitbridge::idp::{NormalizedLogin, SingleUse};
use jitbridge::login::{self, CompleteError};
use std::time::Duration;

fn verified(subject: &str, single_use: Option<&str>) -> NormalizedLogin {
    let claims = serde_json::json!({
        "sub": subject,
        "preferred_username": subject,
        "email": format!("{subject}@example.com"),
        "email_verified": true,
        "groups": ["staff"],
    });
    NormalizedLogin {
        connection: CONNECTION.into(),
        subject: subject.into(),
        claims: claims.as_object().unwrap().clone(),
        idp_session: None,
        idp_principal: None,
        session_ends_at: None,
        single_use: single_use.map(|key| SingleUse {
            key: key.into(),
            ttl: Duration::from_secs(60),
        }),
    }
}

#[tokio::test]
async fn a_login_completed_without_http_makes_a_session_once_and_ends_the_previous_one() {
    let app = spawn_app().await;
    let ctx = app.state.login();
    let once = format!("test\u{0}{}", uuid::Uuid::new_v4());

    let first = login::complete(&ctx, verified("carol", Some(&once)), None, "rid-1")
        .await
        .unwrap();
    let record = app.state.sessions.get(&first).await.unwrap().unwrap();
    assert_eq!(record.subject, "carol");
    assert_eq!(record.account.roles, ["staff"]);
    assert!(
        app.audit_events()
            .await
            .iter()
            .any(|e| e.action == "login.succeeded" && e.request_id.as_deref() == Some("rid-1")),
        "the success is audited with the login's request id"
    );

    let again = login::complete(&ctx, verified("carol", Some(&once)), None, "rid-2").await;
    let refused = again.err();
    assert!(
        matches!(refused, Some(CompleteError::Replayed)),
        "{refused:?}"
    );

    let second = login::complete(&ctx, verified("carol", None), Some(first.clone()), "rid-3")
        .await
        .unwrap();
    assert_eq!(app.state.sessions.get(&first).await.unwrap(), None);
    assert!(app.state.sessions.get(&second).await.unwrap().is_some());
}
