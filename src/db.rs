//! The SQLite database: one file in the data folder, WAL mode, migrations applied at start.
//!
//! Only the pool lives here, opened once by `serve`; each room that needs SQLite takes
//! the pool and keeps its own queries next to its logic (`jobs/table.rs`,
//! `store/table.rs`). Not for: queries.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("opening database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("applying migrations to {path}: {source}")]
    Migrate {
        path: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// Opens (creating) `path`, in WAL mode, and applies the migrations in `migrations/`.
pub async fn open(path: &Path) -> Result<SqlitePool, DbError> {
    let display = path.display().to_string();
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|source| DbError::Open {
            path: display.clone(),
            source,
        })?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        // Connections opened for a burst (two descriptors each, with the WAL) close after
        // a minute unused instead of sqlx's ten, so an idle daemon holds few descriptors.
        .idle_timeout(Duration::from_secs(60))
        .connect_with(options)
        .await
        .map_err(|source| DbError::Open {
            path: display.clone(),
            source,
        })?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .map_err(|source| DbError::Migrate {
            path: display,
            source,
        })?;
    Ok(pool)
}
