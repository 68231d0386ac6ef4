//! Storage: one diesel code base over SQLite (embedded default) and PostgreSQL (production).
//!
//! Backend-specific code stays in this module: choosing the backend from the URL (so that
//! "database unreachable" reads as such, instead of diesel's MultiConnection trying each
//! backend in turn and reporting the last failure), SQLite pragmas, migrations per backend,
//! and write transactions that take SQLite's write lock up front. Diesel is synchronous, so
//! callers go through [`Db::run`], which runs the closure on the blocking thread pool.
//!
//! Read a row by its key with `get_result`, not `first`: `first` adds `LIMIT ?` with a bound
//! value, and SQLite's planner marks such a statement to be prepared again whenever the value
//! is bound, so diesel's statement cache never helped it (five re-preparations per login,
//! a fifth of its CPU on SQLite). `first` stays for "the first row in this order".

mod direct;
pub mod models;
mod pool;
pub mod schema;

use crate::config::Secret;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgresql");
/// Serialises concurrent `migrate` runs from several replicas on PostgreSQL.
const MIGRATION_LOCK_KEY: i64 = 0x6a69_7462_7269_6467; // "jitbridg"

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database")]
    Connect(#[source] diesel::ConnectionError),
    #[error("cannot prepare a database connection")]
    Setup(#[source] diesel::result::Error),
    #[error("no database connection became available")]
    Pool(#[source] diesel::r2d2::PoolError),
    #[error("the database URL is unusable: {0}")]
    Url(&'static str),
    #[error("the database connection is {0}")]
    Closed(&'static str),
    #[error("the database task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("migrations failed: {0}")]
    Migration(String),
}

impl DbError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            Self::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Opens connections of the backend named by the URL scheme.
#[derive(Debug)]
pub struct DbManager {
    backend: Backend,
    /// For SQLite, the file path; for PostgreSQL, the URL (may contain a password).
    target: Secret,
}

impl DbManager {
    pub fn new(url: &Secret) -> Result<Self, DbError> {
        let u = url.expose();
        if let Some(path) = u
            .strip_prefix("sqlite://")
            .or_else(|| u.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(DbError::Url("the sqlite URL names no file"));
            }
            Ok(Self {
                backend: Backend::Sqlite,
                target: Secret::new(path),
            })
        } else if u.starts_with("postgres://") || u.starts_with("postgresql://") {
            Ok(Self {
                backend: Backend::Postgres,
                target: url.clone(),
            })
        } else {
            Err(DbError::Url(
                "unsupported scheme (use sqlite:// or postgres://)",
            ))
        }
    }
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = DbError;

    fn connect(&self) -> Result<DbConnection, DbError> {
        let unavailable = DbError::Connect;
        match self.backend {
            Backend::Postgres => PgConnection::establish(self.target.expose())
                .map(DbConnection::Postgresql)
                .map_err(unavailable),
            Backend::Sqlite => {
                let mut c =
                    SqliteConnection::establish(self.target.expose()).map_err(unavailable)?;
                // WAL lets readers proceed during a write; busy_timeout makes concurrent writers
                // wait for the lock instead of failing; foreign keys are off by default in SQLite.
                c.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(DbError::Setup)?;
                Ok(DbConnection::Sqlite(c))
            }
        }
    }

    /// Run on every checkout. A PostgreSQL connection can have been cut (a server restart, a
    /// failover, an idle timeout on the way): one round trip finds out before a caller's
    /// statement does. A SQLite connection is a file handle in this process and cannot be
    /// cut, so nothing is run for it.
    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), DbError> {
        match conn {
            DbConnection::Postgresql(_) => conn.batch_execute("SELECT 1").map_err(DbError::Query),
            DbConnection::Sqlite(_) => Ok(()),
        }
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

pub type PooledConn = r2d2::PooledConnection<DbManager>;

/// A connection pool, or one direct connection, plus the knowledge of which backend it talks to.
#[derive(Clone)]
pub struct Db {
    conns: Conns,
    backend: Backend,
}

#[derive(Clone)]
enum Conns {
    Pool(pool::Pool),
    Direct(direct::Shared),
}

/// A connection taken from a [`Db`]; it goes back when dropped.
pub enum DbGuard {
    Pooled(PooledConn),
    Direct(direct::Taken),
}

impl std::ops::Deref for DbGuard {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Direct(c) => c,
        }
    }
}

impl std::ops::DerefMut for DbGuard {
    fn deref_mut(&mut self) -> &mut DbConnection {
        match self {
            Self::Pooled(c) => c,
            Self::Direct(c) => c,
        }
    }
}

impl Db {
    /// Connects (checking one connection at once, so a wrong URL fails at start) and returns the pool.
    pub fn connect(url: &Secret, pool_size: u32) -> Result<Self, DbError> {
        let manager = DbManager::new(url)?;
        let backend = manager.backend;
        // Check the target directly first: r2d2 would only report a time-out.
        drop(manager.connect()?);
        let probe = DbManager::new(url)?;
        let pool = pool::Pool::new(manager, probe, pool_size)?;
        Ok(Self {
            conns: Conns::Pool(pool),
            backend,
        })
    }

    /// One connection opened on this thread, no pool, for short-lived processes (the CLI).
    /// r2d2 opens and replenishes connections on background threads that nothing joins; a
    /// process exiting while one of them was in the middle of a TLS handshake crashed
    /// (SIGSEGV in the TLS library's exit-time cleanup) after its work was done. Close with
    /// [`Db::close`] before exit.
    pub fn connect_direct(url: &Secret) -> Result<Self, DbError> {
        let manager = DbManager::new(url)?;
        let backend = manager.backend;
        let conn = manager.connect()?;
        Ok(Self {
            conns: Conns::Direct(direct::Shared::new(conn)),
            backend,
        })
    }

    /// Closes a direct connection now (a pool closes its connections when its last clone is
    /// dropped). Fails if a clone of this handle still holds the connection: the caller then
    /// knows that something is still running.
    pub fn close(self) -> Result<(), DbError> {
        match self.conns {
            Conns::Pool(_) => Ok(()),
            Conns::Direct(shared) => shared.close(),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Hands out no more pooled connections, to any clone of this handle: for a process that
    /// is stopping (background tasks then fail at once instead of waiting out the acquire
    /// timeout). A direct connection is closed with [`Self::close`] instead.
    pub fn shut(&self) {
        if let Conns::Pool(pool) = &self.conns {
            pool.shut();
        }
    }

    /// A connection; with a direct connection, waits while another caller uses it.
    pub fn get(&self) -> Result<DbGuard, DbError> {
        match &self.conns {
            Conns::Pool(pool) => pool.get().map(DbGuard::Pooled),
            Conns::Direct(shared) => shared.take().map(DbGuard::Direct),
        }
    }

    /// Runs blocking database work off the async executor.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            f(&mut conn)
        })
        .await
        .unwrap_or_else(|join| Err(DbError::Task(join).into()))
    }

    /// Applies pending migrations; returns their versions.
    pub fn migrate(&self) -> Result<Vec<String>, DbError> {
        migrate(&mut *self.get()?)
    }

    /// Liveness of the database for `/readyz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|c| c.batch_execute("SELECT 1").map_err(DbError::Query))
            .await
    }
}

/// Applies pending migrations on this connection; returns their versions.
pub fn migrate(conn: &mut DbConnection) -> Result<Vec<String>, DbError> {
    let mig = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    let names =
        |v: Vec<diesel::migration::MigrationVersion<'_>>| v.iter().map(|v| v.to_string()).collect();
    match conn {
        DbConnection::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(names)
            .map_err(mig),
        DbConnection::Postgresql(c) => {
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .execute(c)?;
            let r: Result<Vec<String>, DbError> = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(names)
                .map_err(mig);
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .execute(c)?;
            r
        }
    }
}

impl DbConnection {
    /// A read-write transaction. On SQLite it starts with `BEGIN IMMEDIATE`: a deferred
    /// transaction that reads first and writes later fails with SQLITE_BUSY when another writer
    /// got in between (the busy timeout does not apply to lock upgrades), which concurrent
    /// first logins of one person would hit every time.
    pub fn write_transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<diesel::result::Error>,
    {
        match self {
            Self::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
            Self::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
        }
        match f(self) {
            Ok(v) => match <Self as TransactionManager<Self>>::commit_transaction(self) {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = <Self as TransactionManager<Self>>::rollback_transaction(self);
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = <Self as TransactionManager<Self>>::rollback_transaction(self);
                Err(e)
            }
        }
    }
}

/// Locks the account row until the end of the transaction; false when there is no such row.
///
/// PostgreSQL runs READ COMMITTED: without the lock, a decision taken on a read (is the account
/// active?) can be overtaken by a disable that commits before our own commit. `FOR UPDATE` makes
/// a concurrent disable wait for us, and makes us wait for one already under way and then see
/// its result. SQLite needs nothing: a write transaction (`BEGIN IMMEDIATE`) is exclusive.
pub fn lock_account_row(c: &mut DbConnection, account_id: &str) -> Result<bool, DbError> {
    use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
    match c {
        DbConnection::Postgresql(pg) => Ok(schema::accounts::table
            .filter(schema::accounts::id.eq(account_id))
            .select(schema::accounts::id)
            .for_update()
            .get_result::<String>(pg)
            .optional()?
            .is_some()),
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// The account's row, locked as [`lock_account_row`] locks it, in one statement; `None` when
/// there is no such row.
pub fn lock_and_read_account(
    c: &mut DbConnection,
    account_id: &str,
) -> Result<Option<models::Account>, DbError> {
    use diesel::{OptionalExtension, QueryDsl, SelectableHelper};
    let account = schema::accounts::table.find(account_id);
    Ok(match c {
        DbConnection::Postgresql(pg) => account
            .select(models::Account::as_select())
            .for_update()
            .get_result(pg)
            .optional()?,
        DbConnection::Sqlite(sqlite) => account
            .select(models::Account::as_select())
            .get_result(sqlite)
            .optional()?,
    })
}

/// Now, in UTC, at the precision both backends keep (microseconds).
pub fn now() -> time::PrimitiveDateTime {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now);
    time::PrimitiveDateTime::new(now.date(), now.time())
}
