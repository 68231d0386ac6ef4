//! The operator listener (`server.operator_listen`, loopback by default): `/metrics` and
//! `/readyz`, which say how the service and its storage are doing and are nobody else's
//! business, so the public listener does not serve them. `/healthz` stays public and static
//! for load balancers.

use super::AppState;
use super::errors::cause_chain;
use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpResponse, Responder};
use std::collections::BTreeMap;

pub fn routes(cfg: &mut ServiceConfig) {
    cfg.route("/metrics", web::get().to(super::metrics::metrics))
        .route("/readyz", web::get().to(readyz))
        .route("/healthz", web::get().to(super::healthz));
}

/// Ready when the database and the session store answer; providers that have not been
/// discovered yet are reported (they do not stop other connections from working). A failure
/// is named, not described: its cause goes to the log.
async fn readyz(state: web::Data<AppState>) -> impl Responder {
    let db = match state.db.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "readyz: database unavailable");
            "unavailable"
        }
    };
    let sessions = match state.sessions.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "readyz: session store unavailable");
            "unavailable"
        }
    };
    let mut providers: BTreeMap<_, _> = state
        .providers
        .iter()
        .map(|(name, p)| {
            let s = if p.is_ready() {
                "ready"
            } else {
                "not discovered yet"
            };
            (name.clone(), s)
        })
        .collect();
    for (name, p) in &state.saml {
        let s = if p.has_metadata() {
            "ready"
        } else {
            "no IdP metadata yet"
        };
        providers.insert(name.clone(), s);
    }
    // Once SIGTERM arrived the process is draining: load balancers take it out (503).
    let stopping = state.stopping.is_set();
    let ok = db == "ok" && sessions == "ok" && !stopping;
    let body = serde_json::json!({
        "status": if stopping { "stopping" } else if ok { "ready" } else { "not ready" },
        "database": db,
        "sessions": sessions,
        "connections": providers,
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
