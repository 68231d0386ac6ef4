//! Directory sources: where the sweeper learns who still exists at the IdP.
//!
//! Each source streams the directory's people page by page, so memory stays bounded whatever
//! the directory's size. A listing either completes or fails: an error, a time-out, a refused
//! bind or a listing that ends early is an error, never "these people are gone". Nothing is
//! dropped silently: a part of the directory the source cannot read (an LDAP search reference,
//! a SCIM page that does not line up) fails the listing as incomplete, and an entry without the
//! subject attribute is counted in its [`Page`] so that the sweeper can decide. Vendor APIs
//! (Microsoft Graph, Okta, Google, Keycloak admin) are further implementations of the same
//! trait; the reconciler does not change.

mod ldap;
mod references;
mod scim;

pub use ldap::LdapSource;
pub use references::DEFAULT_IGNORED as DEFAULT_IGNORED_REFERENCES;
pub use scim::ScimSource;

use crate::config::{DirectoryConfig, DirectorySourceConfig};
use std::future::Future;

/// One person as the directory reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    /// Equal to the connection's subject for this person.
    pub subject: String,
    /// False when the directory keeps the entry but marks it disabled (AD flag, SCIM active=false).
    pub active: bool,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub entries: Vec<DirectoryEntry>,
    /// Entries without the subject attribute (absent, empty, or not readable by the service
    /// account): someone is there, but nobody can tell who, so they are counted, never skipped.
    pub without_subject: u64,
}

impl Page {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.without_subject == 0
    }
}

impl From<Vec<DirectoryEntry>> for Page {
    fn from(entries: Vec<DirectoryEntry>) -> Self {
        Self {
            entries,
            without_subject: 0,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DirectoryError {
    #[error("the directory is unreachable: {0}")]
    Unreachable(String),
    #[error("the directory refused our credentials: {0}")]
    Auth(String),
    #[error("the directory did not answer in time")]
    Timeout,
    #[error("the listing ended early or changed while it was read: {0}")]
    Incomplete(String),
    #[error("the directory answered something unusable: {0}")]
    Protocol(String),
}

/// A source of directory entries, read page by page.
pub trait DirectorySource: Send {
    /// The next page; `Ok(None)` once the listing is complete.
    fn next_page(&mut self) -> impl Future<Output = Result<Option<Page>, DirectoryError>> + Send;
}

/// The configured source of a connection (enum dispatch keeps the trait free of boxing).
pub enum Directory {
    Ldap(Box<LdapSource>),
    Scim(ScimSource),
    /// A fixed listing (tests, benchmarks, imports).
    Memory(MemorySource),
}

impl Directory {
    pub fn open(cfg: &DirectoryConfig) -> Result<Self, DirectoryError> {
        Ok(match &cfg.source {
            DirectorySourceConfig::Ldap(l) => Self::Ldap(Box::new(LdapSource::new(
                l.clone(),
                cfg.page_size,
                cfg.timeout,
            ))),
            DirectorySourceConfig::Scim(s) => {
                Self::Scim(ScimSource::new(s.clone(), cfg.page_size, cfg.timeout)?)
            }
        })
    }
}

impl DirectorySource for Directory {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        match self {
            Self::Ldap(s) => s.next_page().await,
            Self::Scim(s) => s.next_page().await,
            Self::Memory(s) => s.next_page().await,
        }
    }
}

/// A listing held in memory, served in pages.
pub struct MemorySource {
    entries: std::vec::IntoIter<DirectoryEntry>,
    page_size: usize,
    /// Fail after this many pages (to test interrupted listings).
    fail_after_pages: Option<usize>,
    pages: usize,
}

impl MemorySource {
    pub fn new(entries: Vec<DirectoryEntry>, page_size: usize) -> Self {
        Self {
            entries: entries.into_iter(),
            page_size: page_size.max(1),
            fail_after_pages: None,
            pages: 0,
        }
    }

    pub fn failing_after(mut self, pages: usize) -> Self {
        self.fail_after_pages = Some(pages);
        self
    }
}

impl DirectorySource for MemorySource {
    async fn next_page(&mut self) -> Result<Option<Page>, DirectoryError> {
        if self.fail_after_pages.is_some_and(|n| self.pages >= n) {
            return Err(DirectoryError::Incomplete("the connection dropped".into()));
        }
        self.pages += 1;
        let page: Vec<_> = self.entries.by_ref().take(self.page_size).collect();
        Ok((!page.is_empty()).then_some(page.into()))
    }
}
