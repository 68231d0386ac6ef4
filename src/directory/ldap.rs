//! LDAP and Active Directory, with `ldap3`: simple bind as a service account, LDAPS or
//! StartTLS, paged results (RFC 2696) so that the server never has to send everything at once.
//!
//! Search references are not chased: one that `ignore_references` does not cover fails the
//! listing as incomplete (see `references`). Entries without the subject attribute are counted
//! in the page, not skipped.

use super::references::ignorable;
use super::{DirectoryEntry, DirectoryError, Page};
use crate::config::LdapConfig;
use base64::Engine;
use ldap3::adapters::PagedResults;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchEntry, SearchStream,
};
use std::time::Duration;

/// userAccountControl bit meaning "account disabled" (ACCOUNTDISABLE).
const AD_ACCOUNTDISABLE: i64 = 0x2;
const LDAP_INVALID_CREDENTIALS: u32 = 49;

pub struct LdapSource {
    cfg: LdapConfig,
    page_size: u32,
    timeout: Duration,
    stream: Option<(Ldap, SearchStream<'static, String, Vec<String>>)>,
    done: bool,
}

fn io_error(e: LdapError) -> DirectoryError {
    match e {
        LdapError::Timeout { .. } => DirectoryError::Timeout,
        LdapError::Io { source } => DirectoryError::Unreachable(source.to_string()),
        other => DirectoryError::Unreachable(other.to_string()),
    }
}

impl LdapSource {
    pub fn new(cfg: LdapConfig, page_size: u32, timeout: Duration) -> Self {
        Self {
            cfg,
            page_size,
            timeout,
            stream: None,
            done: false,
        }
    }

    async fn start(&mut self) -> Result<(), DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.cfg.starttls && self.cfg.url.starts_with("ldap://"));
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(io_error)?;
        ldap3::drive!(conn);
        let bind = ldap
            .with_timeout(self.timeout)
            .simple_bind(&self.cfg.bind_dn, self.cfg.bind_password.expose())
            .await
            .map_err(io_error)?;
        if bind.rc == LDAP_INVALID_CREDENTIALS {
            return Err(DirectoryError::Auth(
                "invalid credentials for the bind DN".into(),
            ));
        }
        bind.success()
            .map_err(|e| DirectoryError::Auth(e.to_string()))?;
        let mut attrs = vec![self.cfg.subject_attribute.clone()];
        if self.cfg.ad_user_account_control {
            attrs.push("userAccountControl".into());
        }
        if let Some((a, _)) = &self.cfg.disabled_attribute {
            attrs.push(a.clone());
        }
        // No EntriesOnly adapter: it drops search references (and its parser panics on a
        // malformed one); `next_page` reads them itself.
        let adapters: Vec<Box<dyn ldap3::adapters::Adapter<'static, String, Vec<String>>>> =
            vec![Box::new(PagedResults::new(self.page_size as i32))];
        let stream = ldap
            .with_timeout(self.timeout)
            .streaming_search_with(
                adapters,
                &self.cfg.base_dn,
                Scope::Subtree,
                &self.cfg.filter,
                attrs,
            )
            .await
            .map_err(io_error)?;
        self.stream = Some((ldap, stream));
        Ok(())
    }

    fn entry(&self, e: SearchEntry) -> Result<Option<DirectoryEntry>, DirectoryError> {
        let attr = &self.cfg.subject_attribute;
        let subject = match e.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(attr)) {
            Some((_, v)) => v.first().cloned(),
            // Binary attributes (objectGUID) arrive as bytes: base64, as ADFS and Entra send them.
            None => e
                .bin_attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(attr))
                .and_then(|(_, v)| v.first())
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        };
        let Some(subject) = subject.filter(|s| !s.is_empty()) else {
            // Someone whose subject we cannot read (absent, or hidden from the service account
            // by an ACL): the caller counts it, since skipping it would make them look gone.
            return Ok(None);
        };
        let value = |name: &str| {
            e.attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().cloned())
        };
        let mut active = true;
        if self.cfg.ad_user_account_control {
            let uac = value("userAccountControl").map(|v| v.trim().parse::<i64>());
            match uac {
                Some(Ok(flags)) => active &= flags & AD_ACCOUNTDISABLE == 0,
                Some(Err(_)) => {
                    return Err(DirectoryError::Protocol(
                        "userAccountControl is not a number".into(),
                    ));
                }
                None => {}
            }
        }
        if let Some((a, disabled_value)) = &self.cfg.disabled_attribute
            && value(a).is_some_and(|v| v.eq_ignore_ascii_case(disabled_value))
        {
            active = false;
        }
        Ok(Some(DirectoryEntry { subject, active }))
    }
}

impl super::DirectorySource for LdapSource {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        if self.done {
            return Ok(None);
        }
        if self.stream.is_none() {
            self.start().await?;
        }
        let mut page = Page::default();
        while page.entries.len() + (page.without_subject as usize) < self.page_size as usize {
            let (_, stream) = self.stream.as_mut().expect("started above");
            let next = tokio::time::timeout(self.timeout, stream.next())
                .await
                .map_err(|_| DirectoryError::Timeout)?
                .map_err(io_error)?;
            match next {
                Some(raw) if raw.is_intermediate() => {}
                Some(raw) if raw.is_ref() => {
                    for url in reference_urls(raw)? {
                        if ignorable(&url, &self.cfg.ignore_references) {
                            tracing::debug!(reference = %url, "ignoring a search reference (ignore_references)");
                            continue;
                        }
                        // Drop the search: the connection closes, the listing has failed.
                        self.stream = None;
                        self.done = true;
                        return Err(DirectoryError::Incomplete(format!(
                            "the directory referred part of the search to {url}, which jitbridge does not follow; list that directory (or the Global Catalog) separately, or add a pattern matching it to ignore_references if it holds nobody"
                        )));
                    }
                }
                Some(raw) => match self.entry(SearchEntry::construct(raw))? {
                    Some(e) => page.entries.push(e),
                    None => page.without_subject += 1,
                },
                None => {
                    let (mut ldap, mut stream) = self.stream.take().expect("started above");
                    let res = stream.finish().await;
                    let _ = ldap.unbind().await;
                    self.done = true;
                    // Anything but success (size limit, time limit, referral, busy) means the
                    // listing is not the whole directory.
                    if res.rc != 0 {
                        return Err(DirectoryError::Incomplete(format!(
                            "the search ended with result code {}: {}{}",
                            res.rc,
                            res.text,
                            if res.refs.is_empty() {
                                String::new()
                            } else {
                                format!(" (referred to {})", res.refs.join(", "))
                            }
                        )));
                    }
                    break;
                }
            }
        }
        Ok((!page.is_empty()).then_some(page))
    }
}

/// The URLs of a SearchResultReference, read without trusting its shape.
fn reference_urls(raw: ResultEntry) -> Result<Vec<String>, DirectoryError> {
    let bad = || DirectoryError::Protocol("a search reference that is not a list of URLs".into());
    let urls: Vec<String> = raw
        .0
        .expect_constructed()
        .ok_or_else(bad)?
        .into_iter()
        .map(|t| {
            t.expect_primitive()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)
        })
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Err(bad());
    }
    Ok(urls)
}
