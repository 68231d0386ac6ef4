//! SCIM 2.0 (RFC 7644) as a client: `GET /Users` with index-based paging (startIndex/count),
//! a bearer token, and `active = false` read as "gone".
//!
//! `totalResults` alone proves nothing: a service that ignores `startIndex` answers page one
//! again and again, and index paging shifts when someone is added or removed mid-listing. So
//! every page must line up (RFC 7644 §3.4.2.4): the echoed `startIndex` is the one asked for,
//! `itemsPerPage` is what the page holds, no resource comes twice, `totalResults` never
//! changes, and the listing ends with exactly `totalResults` resources. Anything else is an
//! incomplete listing (the next sweep tries again). A service may return fewer resources than
//! `count` asked for (many cap it); the next page starts after what actually came.

use super::{DirectoryEntry, DirectoryError, Page};
use crate::config::{ScimConfig, ScimSubject};
use serde::Deserialize;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// The largest page of a listing we read: a page of a few hundred users with their groups is
/// a few megabytes; a service answering more is broken (or hostile) and the listing is refused.
const MAX_PAGE_BYTES: usize = 32 * 1024 * 1024;

pub struct ScimSource {
    cfg: ScimConfig,
    http: reqwest::Client,
    page_size: u32,
    next_index: u64,
    total: Option<u64>,
    /// Randomly keyed hashes of the resources listed so far (8 bytes each, not the ids): a
    /// collision can only make a listing look repeated, which stops the sweep, never one that
    /// acts on a wrong listing.
    listed: HashSet<u64>,
    hasher: RandomState,
    /// Resources received, identifiable or not.
    received: u64,
    done: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    total_results: u64,
    start_index: Option<u64>,
    items_per_page: Option<u64>,
    #[serde(default, rename = "Resources")]
    resources: Vec<ScimUser>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScimUser {
    id: Option<String>,
    external_id: Option<String>,
    user_name: Option<String>,
    /// Absent means active (RFC 7643 §4.1.1 makes it optional).
    active: Option<ActiveFlag>,
}

/// Some services send `"active": "true"` as a string; accept both spellings, nothing else.
#[derive(Deserialize)]
#[serde(untagged)]
enum ActiveFlag {
    Bool(bool),
    Text(String),
}

impl ScimSource {
    pub fn new(cfg: ScimConfig, page_size: u32, timeout: Duration) -> Result<Self, DirectoryError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("jitbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DirectoryError::Unreachable(e.to_string()))?;
        Ok(Self {
            cfg,
            http,
            page_size,
            next_index: 1,
            total: None,
            listed: HashSet::new(),
            hasher: RandomState::new(),
            received: 0,
            done: false,
        })
    }

    fn subject(&self, u: &ScimUser) -> Option<String> {
        match self.cfg.subject_attribute {
            ScimSubject::Id => u.id.clone(),
            ScimSubject::ExternalId => u.external_id.clone(),
            ScimSubject::UserName => u.user_name.clone(),
        }
        .filter(|s| !s.is_empty())
    }
}

impl super::DirectorySource for ScimSource {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        if self.done {
            return Ok(None);
        }
        let url = format!("{}/Users", self.cfg.base_url.as_str().trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .bearer_auth(self.cfg.token.expose())
            .header("Accept", "application/scim+json, application/json")
            .query(&[
                ("startIndex", self.next_index.to_string()),
                ("count", self.page_size.to_string()),
            ])
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    DirectoryError::Timeout
                } else {
                    DirectoryError::Unreachable(e.to_string())
                }
            })?;
        let status = resp.status();
        if status == 401 || status == 403 {
            return Err(DirectoryError::Auth(format!(
                "the SCIM service answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(DirectoryError::Unreachable(format!(
                "the SCIM service answered {status}"
            )));
        }
        let body = crate::read_capped(resp, MAX_PAGE_BYTES)
            .await
            .map_err(|e| match e {
                e if e.is_timeout() => DirectoryError::Timeout,
                crate::BodyError::TooLarge { limit } => DirectoryError::Protocol(format!(
                    "a page of the listing is larger than {limit} bytes (ask for fewer \
                     resources per page: lower the directory's page size)"
                )),
                e => DirectoryError::Incomplete(format!("the response was cut: {e:#}")),
            })?;
        let list: ListResponse = serde_json::from_slice(&body)
            .map_err(|e| DirectoryError::Protocol(format!("not a SCIM ListResponse: {e}")))?;
        self.check_page(&list)?;
        let (asked, total) = (self.next_index, list.total_results);
        if list.resources.is_empty() {
            self.done = true;
            return Ok(None);
        }
        self.next_index += list.resources.len() as u64;
        self.received += list.resources.len() as u64;
        if self.next_index > total {
            self.done = true;
            if self.received != total {
                return Err(DirectoryError::Incomplete(format!(
                    "the listing brought {} resources but totalResults is {total}",
                    self.received
                )));
            }
        }
        let mut page = Page::default();
        for u in &list.resources {
            // RFC 7643 makes `id` required and unique; without one, the subject serves.
            let key = match (&u.id, self.subject(u)) {
                (Some(id), _) => Some(("id", id.clone())),
                (None, Some(s)) => Some(("subject", s)),
                (None, None) => None,
            };
            if let Some(key) = key
                && !self.listed.insert(self.hasher.hash_one(&key))
            {
                // The value stays out of the message: it may be a person's address.
                return Err(DirectoryError::Incomplete(format!(
                    "the page at startIndex {asked} lists a resource (same {}) listed before: the pages overlap (the service ignores startIndex, or its order shifted while it was read)",
                    key.0
                )));
            }
            let Some(subject) = self.subject(u) else {
                page.without_subject += 1;
                continue;
            };
            let active = match &u.active {
                None | Some(ActiveFlag::Bool(true)) => true,
                Some(ActiveFlag::Bool(false)) => false,
                Some(ActiveFlag::Text(t)) if t.eq_ignore_ascii_case("true") => true,
                Some(ActiveFlag::Text(t)) if t.eq_ignore_ascii_case("false") => false,
                Some(ActiveFlag::Text(_)) => {
                    return Err(DirectoryError::Protocol(
                        "`active` is neither true nor false".into(),
                    ));
                }
            };
            page.entries.push(DirectoryEntry { subject, active });
        }
        Ok(Some(page))
    }
}

impl ScimSource {
    /// That the page is the one asked for (RFC 7644 §3.4.2.4), before anything is taken from it.
    fn check_page(&mut self, list: &ListResponse) -> Result<(), DirectoryError> {
        let incomplete = |m: String| Err(DirectoryError::Incomplete(m));
        let (asked, total, n) = (
            self.next_index,
            list.total_results,
            list.resources.len() as u64,
        );
        match self.total {
            None => self.total = Some(total),
            Some(t) if t != total => {
                return incomplete(format!("totalResults changed from {t} to {total}"));
            }
            Some(_) => {}
        }
        if n == 0 && asked <= total {
            return incomplete(format!("an empty page at index {asked} of {total}"));
        }
        match list.start_index {
            Some(s) if s != asked => {
                return incomplete(format!(
                    "asked for startIndex {asked}, the service answered startIndex {s}: it does not page as RFC 7644 says"
                ));
            }
            // Without the echo nothing shows which page this is; only a first page that holds
            // everything needs none.
            None if n > 0 && !(asked == 1 && n >= total) => {
                return incomplete(format!(
                    "the service did not echo startIndex for a page of {n} of {total} (RFC 7644 §3.4.2.4 requires it when paging), so the pages cannot be shown to line up"
                ));
            }
            _ => {}
        }
        if let Some(ipp) = list.items_per_page
            && ipp != n
        {
            return incomplete(format!(
                "itemsPerPage says {ipp} but the page at index {asked} holds {n} resources"
            ));
        }
        Ok(())
    }
}
