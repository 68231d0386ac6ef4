//! SCIM 2.0 (RFC 7644) as a client: `GET /Users` with index-based paging (startIndex/count),
//! a bearer token, and `active = false` read as "gone".
//!
//! Index paging shifts when someone is added or removed mid-listing, which could skip a person
//! and make them look gone; a listing whose totalResults changes between pages is therefore
//! refused as incomplete (the next sweep tries again).

use super::{DirectoryEntry, DirectoryError};
use crate::config::{ScimConfig, ScimSubject};
use serde::Deserialize;
use std::time::Duration;

pub struct ScimSource {
    cfg: ScimConfig,
    http: reqwest::Client,
    page_size: u32,
    next_index: u64,
    total: Option<u64>,
    done: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    total_results: u64,
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
    async fn next_page(&mut self) -> Result<Option<Vec<DirectoryEntry>>, DirectoryError> {
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
        let body = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                DirectoryError::Timeout
            } else {
                DirectoryError::Incomplete(format!("the response was cut: {e}"))
            }
        })?;
        let list: ListResponse = serde_json::from_slice(&body)
            .map_err(|e| DirectoryError::Protocol(format!("not a SCIM ListResponse: {e}")))?;
        match self.total {
            None => self.total = Some(list.total_results),
            Some(t) if t != list.total_results => {
                return Err(DirectoryError::Incomplete(format!(
                    "totalResults changed from {t} to {}",
                    list.total_results
                )));
            }
            Some(_) => {}
        }
        let total = list.total_results;
        if list.resources.is_empty() {
            if self.next_index <= total {
                return Err(DirectoryError::Incomplete(format!(
                    "an empty page at index {} of {total}",
                    self.next_index
                )));
            }
            self.done = true;
            return Ok(None);
        }
        self.next_index += list.resources.len() as u64;
        if self.next_index > total {
            self.done = true;
        }
        let mut page = Vec::with_capacity(list.resources.len());
        for u in &list.resources {
            let Some(subject) = self.subject(u) else {
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
            page.push(DirectoryEntry { subject, active });
        }
        Ok(Some(page))
    }
}
