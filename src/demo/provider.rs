//! A DEVELOPMENT-ONLY OpenID provider for `jitbridge demo`: seeded users, a "pick a user" page
//! instead of passwords, one confidential client. It binds to loopback only and is reachable
//! from no other command. It still does the protocol properly (code flow, PKCE S256 required,
//! single-use codes, RS256 ID tokens with nonce, RFC 9207 `iss`), so the bridge's real
//! validation runs against it unchanged.

use crate::idp::oidc::ExtraClaims;
use crate::session::random_token;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openidconnect::core::{
    CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, IdToken, IdTokenClaims, IssuerUrl, JsonWebKeyId, JsonWebKeySet, PrivateSigningKey,
    StandardClaims, SubjectIdentifier,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CODE_TTL: Duration = Duration::from_secs(60);

pub struct DemoUser {
    pub id: &'static str,
    pub claims: Value,
}

pub fn seeded_users() -> Vec<DemoUser> {
    vec![
        DemoUser {
            id: "alice",
            claims: json!({"preferred_username": "alice", "email": "alice@example.com", "email_verified": true,
                "given_name": "Alice", "family_name": "Liddell", "department": "Engineering",
                "groups": ["staff", "admins"], "phone_number": "+44 20 7946 0000"}),
        },
        DemoUser {
            id: "bob",
            claims: json!({"preferred_username": "bob", "email": "bob@example.com", "email_verified": true,
                "given_name": "Bob", "family_name": "Builder", "department": "Operations", "groups": ["staff"]}),
        },
        DemoUser {
            id: "mallory",
            claims: json!({"preferred_username": "mallory", "email": "mallory@evil.example", "email_verified": true,
                "given_name": "Mallory", "family_name": "Outsider", "groups": ["contractors"]}),
        },
    ]
}

struct AuthRequest {
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    challenge: String,
    created: Instant,
}

struct IssuedCode {
    user: &'static str,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    created: Instant,
}

pub struct DevProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    key: CoreRsaPrivateSigningKey,
    users: Vec<DemoUser>,
    requests: Mutex<HashMap<String, AuthRequest>>,
    codes: Mutex<HashMap<String, IssuedCode>>,
    access_tokens: Mutex<HashMap<String, &'static str>>,
}

impl DevProvider {
    pub fn new(
        issuer: String,
        redirect_uri: String,
        post_logout_redirect_uri: String,
    ) -> anyhow::Result<Self> {
        let rsa = openssl::rsa::Rsa::generate(2048)?;
        let pem = String::from_utf8(rsa.private_key_to_pem()?)?;
        let key =
            CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("demo-1".into())))
                .map_err(anyhow::Error::msg)?;
        Ok(Self {
            issuer,
            client_id: "jitbridge-demo".into(),
            client_secret: random_token(),
            redirect_uri,
            post_logout_redirect_uri,
            key,
            users: seeded_users(),
            requests: Mutex::default(),
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
        })
    }

    fn user(&self, id: &str) -> Option<&DemoUser> {
        self.users.iter().find(|u| u.id == id)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route("/jwks", web::get().to(jwks))
    .route("/authorize", web::get().to(authorize))
    .route("/authorize", web::post().to(approve))
    .route("/token", web::post().to(token))
    .route("/userinfo", web::get().to(userinfo))
    .route("/logout", web::get().to(end_session));
}

async fn discovery(p: web::Data<DevProvider>) -> HttpResponse {
    let i = &p.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "scopes_supported": ["openid", "email", "profile"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(p: web::Data<DevProvider>) -> HttpResponse {
    HttpResponse::Ok().json(JsonWebKeySet::new(vec![p.key.as_verification_key()]))
}

#[derive(Template)]
#[template(path = "demo_authorize.html")]
struct PickUserPage<'a> {
    request: String,
    users: Vec<(&'a str, String)>,
}

fn bad(msg: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain")
        .body(msg.to_string())
}

async fn authorize(
    p: web::Data<DevProvider>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("client_id") != p.client_id || get("redirect_uri") != p.redirect_uri {
        return bad("unknown client or redirect_uri");
    }
    if get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
    {
        return bad("this provider needs response_type=code with PKCE S256");
    }
    let id = random_token();
    p.requests.lock().unwrap_or_else(|e| e.into_inner()).insert(
        id.clone(),
        AuthRequest {
            redirect_uri: get("redirect_uri").into(),
            state: get("state").into(),
            nonce: q.get("nonce").cloned(),
            challenge: get("code_challenge").into(),
            created: Instant::now(),
        },
    );
    let users = p
        .users
        .iter()
        .map(|u| {
            (
                u.id,
                format!(
                    "{} ({})",
                    u.claims["given_name"].as_str().unwrap_or(u.id),
                    u.claims["email"].as_str().unwrap_or("")
                ),
            )
        })
        .collect();
    super::super::web::errors::html_page(
        actix_web::http::StatusCode::OK,
        &PickUserPage { request: id, users },
    )
}

#[derive(Deserialize)]
struct Approve {
    request: String,
    user: String,
}

async fn approve(p: web::Data<DevProvider>, f: web::Form<Approve>) -> HttpResponse {
    let Some(req) = p
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&f.request)
    else {
        return bad("unknown or used authorization request");
    };
    let Some(user) = p.user(&f.user) else {
        return bad("unknown user");
    };
    if req.created.elapsed() > Duration::from_secs(600) {
        return bad("authorization request expired");
    }
    let code = random_token();
    p.codes.lock().unwrap_or_else(|e| e.into_inner()).insert(
        code.clone(),
        IssuedCode {
            user: user.id,
            redirect_uri: req.redirect_uri.clone(),
            nonce: req.nonce,
            challenge: req.challenge,
            created: Instant::now(),
        },
    );
    let mut to = url::Url::parse(&req.redirect_uri).expect("registered redirect uri");
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &req.state)
        .append_pair("iss", &p.issuer);
    HttpResponse::SeeOther()
        .insert_header(("Location", to.as_str()))
        .finish()
}

fn token_error(code: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": code }))
}

async fn token(
    req: HttpRequest,
    p: web::Data<DevProvider>,
    f: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let basic = req
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let expected = format!(
        "{}:{}",
        url::form_urlencoded::byte_serialize(p.client_id.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(p.client_secret.as_bytes()).collect::<String>()
    );
    if basic.as_deref() != Some(expected.as_str()) {
        return HttpResponse::Unauthorized().json(json!({ "error": "invalid_client" }));
    }
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "authorization_code" {
        return token_error("unsupported_grant_type");
    }
    let Some(code) = p
        .codes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(get("code"))
    else {
        return token_error("invalid_grant");
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(get("code_verifier").as_bytes()));
    if code.created.elapsed() > CODE_TTL
        || code.redirect_uri != get("redirect_uri")
        || challenge != code.challenge
    {
        return token_error("invalid_grant");
    }
    let Some(user) = p.user(code.user) else {
        return token_error("invalid_grant");
    };
    let now = chrono::Utc::now();
    let mut extra = user.claims.as_object().cloned().unwrap_or_default();
    extra.retain(|k, _| k != "sub");
    let claims = IdTokenClaims::new(
        IssuerUrl::new(p.issuer.clone()).expect("issuer URL"),
        vec![Audience::new(p.client_id.clone())],
        now + chrono::Duration::minutes(5),
        now,
        StandardClaims::<CoreGenderClaim>::new(SubjectIdentifier::new(user.id.into())),
        ExtraClaims::from(extra),
    )
    .set_nonce(code.nonce.map(openidconnect::Nonce::new));
    let id_token: Result<
        IdToken<
            ExtraClaims,
            CoreGenderClaim,
            CoreJweContentEncryptionAlgorithm,
            CoreJwsSigningAlgorithm,
        >,
        _,
    > = IdToken::new(
        claims,
        &p.key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    );
    let Ok(id_token) = id_token else {
        return HttpResponse::InternalServerError().json(json!({ "error": "server_error" }));
    };
    let access = random_token();
    p.access_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(access.clone(), user.id);
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "access_token": access, "token_type": "Bearer", "expires_in": 300, "id_token": id_token.to_string() }))
}

async fn userinfo(req: HttpRequest, p: web::Data<DevProvider>) -> HttpResponse {
    let token = req
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default();
    let user = p
        .access_tokens
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(token)
        .copied();
    match user.and_then(|u| p.user(u)) {
        Some(u) => {
            let mut claims = u.claims.clone();
            claims["sub"] = Value::String(u.id.into());
            HttpResponse::Ok().json(claims)
        }
        None => HttpResponse::Unauthorized().json(json!({ "error": "invalid_token" })),
    }
}

async fn end_session(
    p: web::Data<DevProvider>,
    q: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    match q.get("post_logout_redirect_uri") {
        Some(uri) if *uri == p.post_logout_redirect_uri => HttpResponse::SeeOther()
            .insert_header(("Location", uri.as_str()))
            .finish(),
        _ => HttpResponse::Ok()
            .content_type("text/plain")
            .body("signed out of the demo provider"),
    }
}
