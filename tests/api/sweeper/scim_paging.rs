//! SCIM paging that does not add up, from a small fake service: the real scim2-server pages
//! correctly, so only a fake can ignore `startIndex`, repeat or skip people. The fake answers
//! with RFC 7644 §3.4.2's ListResponse shape (schemas, totalResults, startIndex, itemsPerPage,
//! Resources).

use super::*;
use crate::helpers::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use jitbridge::sweeper::SweepOutcome;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// How the fake answers `GET /Users?startIndex=&count=`.
#[derive(Clone, Copy, Debug)]
pub enum Paging {
    /// As RFC 7644 says, but never more than this many per page (a service capping `count`).
    Caps(usize),
    /// Always the first page, echoing `startIndex: 1`.
    IgnoresStartIndex,
    /// Always the first page, echoing the requested `startIndex` as if it had honoured it.
    IgnoresStartIndexAndEchoesIt,
    /// Always the first page, without `startIndex` or `itemsPerPage` in the answer.
    IgnoresStartIndexSilently,
    /// Each page starts one person earlier than asked, one more with every page (an order
    /// that shifts while it is read): people are listed twice and the last ones never.
    Overlaps,
}

pub struct Fake {
    pub base: String,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let h = self.handle.clone();
        tokio::spawn(async move { h.stop(false).await });
    }
}

fn page(users: &[String], paging: Paging, q: &HashMap<String, String>) -> Value {
    let start: usize = q
        .get("startIndex")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let count: usize = q.get("count").and_then(|s| s.parse().ok()).unwrap_or(100);
    let (from, n) = match paging {
        Paging::Caps(cap) => (start - 1, count.min(cap)),
        Paging::IgnoresStartIndex
        | Paging::IgnoresStartIndexAndEchoesIt
        | Paging::IgnoresStartIndexSilently => (0, count),
        Paging::Overlaps => {
            let k = (start - 1) / count.max(1);
            (start - 1 - k.min(start - 1), count)
        }
    };
    let items: Vec<Value> = users
        .iter()
        .skip(from)
        .take(n)
        .map(|u| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": format!("id-{u}"),
                "userName": u,
                "active": true,
            })
        })
        .collect();
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": users.len(),
        "startIndex": match paging {
            Paging::IgnoresStartIndex => 1,
            _ => start,
        },
        "itemsPerPage": items.len(),
        "Resources": items,
    });
    if let Paging::IgnoresStartIndexSilently = paging {
        let o = body.as_object_mut().unwrap();
        o.remove("startIndex");
        o.remove("itemsPerPage");
    }
    body
}

impl Fake {
    pub async fn start(users: &[&str], paging: Paging) -> Self {
        let users: Arc<Vec<String>> = Arc::new(users.iter().map(|s| s.to_string()).collect());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            let users = users.clone();
            App::new().route(
                "/scim/v2/Users",
                web::get().to(move |q: web::Query<HashMap<String, String>>| {
                    let body = page(&users, paging, &q);
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/scim+json")
                            .json(body)
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}/scim/v2"),
            handle,
        }
    }
}

fn directory(base: &str, page_size: u32) -> String {
    format!(
        "kind = \"scim\"\nbase_url = \"{base}\"\ntoken = \"fake-token\"\nsubject_attribute = \"userName\"\npage_size = {page_size}\ntimeout = \"5s\"\ninterval = \"1h\"\ngrace_sweeps = 1\nmax_disable_fraction = 1.0\n"
    )
}

const PEOPLE: &[&str] = &["ann", "ben", "cat", "dan", "eve"];

/// Sweeps a connection whose five people all exist at the fake; returns the outcome and who
/// was disabled.
async fn sweep_against(paging: Paging, page_size: u32) -> (SweepOutcome, Vec<&'static str>) {
    let fake = Fake::start(PEOPLE, paging).await;
    let app = spawn_app_with(Options {
        directory: Some(directory(&fake.base, page_size)),
        ..Default::default()
    })
    .await;
    for p in PEOPLE {
        provision(&app, p).await;
    }
    let r = sweep(&app, SweepOptions::default()).await;
    let mut disabled = vec![];
    for p in PEOPLE {
        if status(&app, p).await != "active" {
            disabled.push(*p);
        }
    }
    (r.outcome, disabled)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scim_service_ignoring_start_index_repeated_page_one_and_everyone_after_it_looked_gone() {
    for paging in [
        Paging::IgnoresStartIndex,
        Paging::IgnoresStartIndexAndEchoesIt,
        Paging::IgnoresStartIndexSilently,
    ] {
        let (outcome, disabled) = sweep_against(paging, 2).await;
        assert!(
            matches!(outcome, SweepOutcome::Aborted(_)),
            "{paging:?}: {outcome:?}, disabled {disabled:?}"
        );
        assert!(disabled.is_empty(), "{paging:?} disabled {disabled:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scim_pages_that_overlap_listed_someone_twice_and_made_the_last_person_look_gone() {
    let (outcome, disabled) = sweep_against(Paging::Overlaps, 2).await;
    let SweepOutcome::Aborted(reason) = &outcome else {
        panic!("{outcome:?}, disabled {disabled:?}")
    };
    assert!(reason.contains("pages overlap"), "{reason}");
    assert!(disabled.is_empty(), "disabled {disabled:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scim_service_that_caps_count_is_listed_completely() {
    // Asked for 4 per page, it answers 1 or 2: startIndex advances by what came back.
    for cap in [1, 2] {
        let (outcome, disabled) = sweep_against(Paging::Caps(cap), 4).await;
        assert_eq!(outcome, SweepOutcome::Applied, "cap {cap}");
        assert!(disabled.is_empty(), "cap {cap}: disabled {disabled:?}");
    }
}
