//! Storage: one code path for SQLite (embedded default) and PostgreSQL.
//!
//! Queries are plain diesel on [`AnyConnection`]; each runs on the blocking
//! thread pool through [`Db::interact`], never on an async worker thread.

pub mod algorithms;
pub mod api_keys;
pub mod audit;
pub mod brokers;
pub mod directory;
pub mod failures;
pub mod flows;
pub mod model_hosts;
pub mod replays;
pub mod schema;
pub mod users;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// One set of migrations for both backends, in SQL both accept (binary
/// columns are `BYTEA`: SQLite stores the bytes bound to them as they are).
const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// A connection to whichever backend the database URL names.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Opens connections for the pool, choosing the backend from the URL (and
/// never falling back to another one).
struct Manager {
    url: String,
    backend: Backend,
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        match self.backend {
            Backend::Postgres => PgConnection::establish(&self.url)
                .map(AnyConnection::Postgresql)
                .map_err(r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let path = self.url.strip_prefix("sqlite://").unwrap_or(&self.url);
                let mut conn =
                    SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        conn.is_broken()
    }
}

/// Why a database call failed.
#[derive(Debug)]
pub enum DbError {
    /// No connection could be had.
    Unavailable(String),
    Query(diesel::result::Error),
    /// The work refused what it was asked, for the caller to hear as it is
    /// (a transaction that returns it is rolled back).
    Refused(app::domain::AppError),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unavailable(e) => write!(f, "the database is unavailable: {e}"),
            DbError::Query(e) => write!(f, "database query failed: {e}"),
            DbError::Refused(e) => write!(f, "refused: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<diesel::result::Error> for DbError {
    fn from(e: diesel::result::Error) -> Self {
        DbError::Query(e)
    }
}

impl DbError {
    /// True when the write lost a race with another one and is worth
    /// running again: a unique constraint (the other one inserted first),
    /// or SQLite's lock (the other one wrote since this one read).
    pub fn lost_a_race(&self) -> bool {
        self.is_unique_violation()
            || matches!(self, DbError::Query(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("database is locked"))
    }

    /// True when a unique constraint refused the write.
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

/// Creates a directory (and its missing parents) that only this user may
/// enter; an existing one is left as it is.
pub fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// The connection pool.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<Manager>,
}

impl Db {
    /// Opens the database (creating the SQLite file if needed) and runs
    /// pending migrations.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let backend = Backend::of(url);
        if backend == Backend::Sqlite {
            let path = std::path::Path::new(url.strip_prefix("sqlite://").unwrap_or(url));
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_private_dir(parent).with_context(|| {
                    format!("could not create the directory {}", parent.display())
                })?;
            }
            // Readable by this user only (SQLite gives its journal files the
            // same permissions); an existing file is left as it is.
            if url != ":memory:" && !url.starts_with("file:") {
                use std::os::unix::fs::OpenOptionsExt;
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("could not create the database file {}", path.display())
                        });
                    }
                }
            }
        }
        let manager = Manager {
            url: url.to_owned(),
            backend,
        };
        let pool = r2d2::Pool::builder()
            .max_size(if backend == Backend::Sqlite { 4 } else { 8 })
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .with_context(|| {
                format!(
                    "could not open the database {}",
                    crate::config::redact_url(url)
                )
            })?;
        let db = Db { pool };
        db.migrate()?;
        Ok(db)
    }

    /// Runs pending migrations; returns how many ran.
    pub fn migrate(&self) -> anyhow::Result<usize> {
        let mut conn = self
            .pool
            .get()
            .context("could not connect to the database")?;
        let applied = match &mut *conn {
            AnyConnection::Sqlite(c) => c.run_pending_migrations(MIGRATIONS).map(|v| v.len()),
            AnyConnection::Postgresql(c) => c.run_pending_migrations(MIGRATIONS).map(|v| v.len()),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("could not run the database migrations")?;
        Ok(applied)
    }

    /// Reverts the newest applied migration and returns its version (for
    /// tests of what a migration does to rows written before it).
    #[doc(hidden)]
    pub fn revert_last_migration(&self) -> anyhow::Result<String> {
        let mut conn = self
            .pool
            .get()
            .context("could not connect to the database")?;
        match &mut *conn {
            AnyConnection::Sqlite(c) => c.revert_last_migration(MIGRATIONS).map(|v| v.to_string()),
            AnyConnection::Postgresql(c) => {
                c.revert_last_migration(MIGRATIONS).map(|v| v.to_string())
            }
        }
        .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    pub async fn interact<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> QueryResult<T> + Send + 'static,
    {
        self.off_async(move |c| work(c).map_err(DbError::from))
            .await
    }

    /// [`Db::interact`] in one transaction, for work that may refuse with
    /// [`DbError::Refused`]: on any error, nothing it wrote is kept.
    pub async fn transaction<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        self.off_async(move |c| c.transaction(work)).await
    }

    /// Runs `work` with a pooled connection on the blocking thread pool.
    async fn off_async<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool
                .get()
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            work(&mut conn)
        })
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))?
    }

    /// The same as [`Db::interact`], for code that is already off the async threads
    /// (the command line).
    pub fn run_blocking<T>(
        &self,
        work: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
    ) -> Result<T, DbError> {
        let mut conn = self
            .pool
            .get()
            .map_err(|e| DbError::Unavailable(e.to_string()))?;
        work(&mut conn).map_err(DbError::from)
    }
}

/// Logs a storage failure and answers with the detail-free `Internal` error.
/// A refusal ([`DbError::Refused`]) is answered as it is.
pub fn internal(error: DbError) -> app::domain::AppError {
    if let DbError::Refused(refusal) = error {
        return refusal;
    }
    tracing::error!(%error, "database call failed");
    app::domain::AppError::Internal
}

/// `?` on a database call in a service: see [`internal`].
impl From<DbError> for app::domain::AppError {
    fn from(error: DbError) -> Self {
        internal(error)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A fresh random id (128 bits, hex).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::failures::{self, Failure};

    /// SQLite gives a `BYTEA` column numeric affinity, which turns *text*
    /// that looks like a number into one; bytes bound as a blob, as diesel
    /// binds them, are kept as they are, whatever they look like.
    #[test]
    fn binary_columns_keep_their_bytes_on_sqlite() {
        let dir = std::env::temp_dir().join(format!("eventflows-db-{}", super::new_id()));
        let db = super::Db::open(&dir.join("bytes.db").to_string_lossy()).unwrap();
        let mut conn = db.pool.get().unwrap();
        let byte_strings: [&[u8]; 5] = [b"42", b"007", b"1.50", b" 3 ", &[0, 255, 10]];
        let kept: Vec<Failure> = byte_strings
            .iter()
            .enumerate()
            .map(|(i, bytes)| Failure {
                at_ms: i as i64,
                partition: 0,
                offset: i as i64,
                version: "1.0.0".into(),
                kind: "bad_input".into(),
                message: "m".into(),
                attempts: 1,
                key: Some(bytes.to_vec()),
                value: Some(bytes.to_vec()),
                value_bytes: bytes.len() as i64,
                headers: "[]".into(),
            })
            .collect();
        failures::keep(&mut conn, "flow", &kept).unwrap();
        let (mut read, count, _) = failures::latest(&mut conn, "flow", 10).unwrap();
        assert_eq!(count, 5);
        read.sort_by_key(|(_, f)| f.offset);
        let read: Vec<Failure> = read.into_iter().map(|(_, f)| f).collect();
        assert_eq!(read, kept);
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
