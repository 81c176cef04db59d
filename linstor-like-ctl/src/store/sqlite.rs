//! The SQLite store: one database file, schema migrations by `PRAGMA user_version`.
//!
//! Objects are rows of `objects(kind, key, value)` with the object as JSON: the controller's
//! model changes more often than its storage needs do, and one generic table keeps every model
//! change out of the schema. Error reports have their own table (they are listed by time).
//!
//! Migrations are applied in order inside one transaction at open; a database with a newer
//! version than this build knows is refused rather than misread.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, params};

use super::StoreError;
use crate::cluster::Row;
use crate::reports::{ErrorReport, KEEP};

/// The schema, one step per version (index 0 takes version 0 to 1).
const MIGRATIONS: &[&str] = &[
    // 1: objects.
    "CREATE TABLE objects (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    );",
    // 2: error reports.
    "CREATE TABLE error_reports (
        id TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        origin TEXT NOT NULL,
        context TEXT NOT NULL,
        message TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX error_reports_time ON error_reports (time);",
];

/// The SQLite store.
pub struct SqliteStore {
    path: String,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let p = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: p.clone(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let supported = MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                path: p,
                found: version,
                supported,
            });
        }
        if version < supported {
            let tx = conn.transaction().map_err(err)?;
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql).map_err(err)?;
                tracing::info!(database = %p, version = i + 1, "schema migrated");
            }
            tx.pragma_update(None, "user_version", supported).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(SqliteStore {
            path: p,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        self.conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// Every stored object.
    pub fn load(&self) -> Result<Vec<Row>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT kind, key, value FROM objects ORDER BY kind, key")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Row {
                    kind: r.get(0)?,
                    key: r.get(1)?,
                    value: Some(r.get(2)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Persists `rows` in one transaction.
    pub fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for row in rows {
            match &row.value {
                Some(v) => tx.execute(
                    "INSERT INTO objects (kind, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                    params![row.kind, row.key, v],
                ),
                None => tx.execute(
                    "DELETE FROM objects WHERE kind = ?1 AND key = ?2",
                    params![row.kind, row.key],
                ),
            }
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Adds an error report, dropping the oldest beyond [`KEEP`].
    pub fn add_report(&self, r: &ErrorReport) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO error_reports (id, time, origin, context, message, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.id, r.time, r.origin, r.context, r.message, r.details],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM error_reports WHERE id NOT IN
             (SELECT id FROM error_reports ORDER BY time DESC, id DESC LIMIT ?1)",
            params![KEEP as i64],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every error report, oldest first.
    pub fn reports(&self) -> Result<Vec<ErrorReport>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, time, origin, context, message, details FROM error_reports ORDER BY time, id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ErrorReport {
                    id: r.get(0)?,
                    time: r.get(1)?,
                    origin: r.get(2)?,
                    context: r.get(3)?,
                    message: r.get(4)?,
                    details: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopening_and_migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/controller.db");
        let rows = vec![
            Row {
                kind: "node".into(),
                key: "n1".into(),
                value: Some("{}".into()),
            },
            Row {
                kind: "node".into(),
                key: "n2".into(),
                value: Some("{\"a\":1}".into()),
            },
        ];
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
            s.commit(&rows).unwrap();
            s.commit(&[Row {
                kind: "node".into(),
                key: "n1".into(),
                value: None,
            }])
            .unwrap();
            s.add_report(&ErrorReport {
                id: "X-000001".into(),
                time: 1,
                origin: "controller".into(),
                context: "test".into(),
                message: "m".into(),
                details: "d".into(),
            })
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load().unwrap(), rows[1..]);
        assert_eq!(s.reports().unwrap()[0].id, "X-000001");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        drop(SqliteStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = SqliteStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}
