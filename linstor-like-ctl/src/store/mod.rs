//! Where the cluster state lives.
//!
//! - [`sqlite`]: one file, the default (`/var/lib/replbd/controller.db`), with schema migrations;
//! - [`etcd`]: an etcd cluster, for several controllers of which one is active: the one holding
//!   the leader key under its lease ([`etcd::Election`]); its writes are conditional on still
//!   holding it, so a controller that lost the lease can never overwrite its successor's state.
//!
//! Both keep the same rows ([`Row`]) and error reports, so the controller does not care which.

pub mod etcd;
pub mod sqlite;

use thiserror::Error;

use crate::cluster::Row;
use crate::reports::ErrorReport;

/// Why the store failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("the SQLite database {path} failed: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer replbd.
    #[error(
        "the database {path} has schema version {found}, newer than this controller's {supported}: upgrade replbd-controller"
    )]
    TooNew {
        /// The database file.
        path: String,
        /// Its schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// etcd failed.
    #[error("etcd at {endpoints} failed: {message}")]
    Etcd {
        /// The endpoints.
        endpoints: String,
        /// What failed.
        message: String,
    },
    /// This controller is no longer the leader: another one took over.
    #[error("this controller lost its etcd leader lease; another controller is active")]
    NotLeader,
    /// A stored report could not be read.
    #[error("a stored error report is not valid: {0}")]
    BadReport(#[source] serde_json::Error),
}

/// The store of a controller.
pub enum Store {
    /// SQLite.
    Sqlite(sqlite::SqliteStore),
    /// etcd (boxed: its client is much larger than the SQLite handle).
    Etcd(Box<etcd::EtcdStore>),
}

impl Store {
    /// `sqlite` or `etcd`.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Etcd(_) => "etcd",
        }
    }

    /// The database file or the etcd endpoints.
    pub fn location(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().to_owned(),
            Store::Etcd(e) => e.endpoints().to_owned(),
        }
    }

    /// Every stored object.
    pub async fn load(&self) -> Result<Vec<Row>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load(),
            Store::Etcd(e) => e.load().await,
        }
    }

    /// Persists `rows` atomically.
    pub async fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.commit(rows),
            Store::Etcd(e) => e.commit(rows).await,
        }
    }

    /// Adds an error report (dropping the oldest beyond [`crate::reports::KEEP`]).
    pub async fn add_report(&self, report: &ErrorReport) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_report(report),
            Store::Etcd(e) => e.add_report(report).await,
        }
    }

    /// Every error report, oldest first.
    pub async fn reports(&self) -> Result<Vec<ErrorReport>, StoreError> {
        match self {
            Store::Sqlite(s) => s.reports(),
            Store::Etcd(e) => e.reports().await,
        }
    }
}
