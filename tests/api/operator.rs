//! The operator listener: `/metrics` and `/readyz` there only; `/healthz` public and static;
//! nothing public echoes an internal error's text.

use crate::helpers::{Browser, Options, spawn_app_with};
use crate::private_redis::PrivateRedis;

/// Text that only an internal error would put into an answer.
fn looks_internal(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    [
        "refused",
        "os error",
        "redis",
        "io error",
        "database:",
        "unavailable:",
    ]
    .iter()
    .any(|w| b.contains(w))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_readyz_are_no_longer_served_on_the_public_listener() {
    let app = spawn_app_with(Options::default()).await;
    let b = Browser::new();
    for path in ["/metrics", "/readyz"] {
        let r = b.get(&format!("{}{path}", app.base)).await;
        assert_eq!(r.status(), 404, "public {path}");
    }
    let r = b.get(&format!("{}/healthz", app.base)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok", "static, no internals");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_listener_serves_metrics_and_readyz() {
    let app = spawn_app_with(Options::default()).await;
    let b = Browser::new();
    let r = b.get(&format!("{}/metrics", app.operator)).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text().await.unwrap().ends_with("# EOF\n"),
        "OpenMetrics text"
    );
    let r = b.get(&format!("{}/readyz", app.operator)).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["sessions"], "ok");
    for path in ["/login", "/logout", "/auth/verify"] {
        let r = b.get(&format!("{}{path}", app.operator)).await;
        assert_eq!(r.status(), 404, "operator {path}: not the public surface");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_names_a_store_that_is_down_without_its_error_text() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(Options {
        sessions: Some(redis.sessions_toml()),
        ..Default::default()
    })
    .await;
    redis.stop();
    let r = Browser::new()
        .get(&format!("{}/readyz", app.operator))
        .await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["sessions"], "unavailable", "{body}");
    assert_eq!(body["database"], "ok", "{body}");
    redis.resume();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_answer_no_longer_echoes_internal_error_text() {
    let mut redis = PrivateRedis::start();
    let app = spawn_app_with(Options {
        sessions: Some(redis.sessions_toml()),
        ..Default::default()
    })
    .await;
    redis.stop();
    let b = Browser::new();
    for path in ["/readyz", "/login", "/auth/verify", "/metrics", "/logout"] {
        let r = b.get(&format!("{}{path}", app.base)).await;
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(!looks_internal(&body), "public {path} ({status}): {body}");
    }
}
