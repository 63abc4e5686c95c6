//! Where everything is kept: SQLite by default, PostgreSQL when given.
//!
//! One schema, two flavours (`migrations/sqlite`, `migrations/postgres`),
//! applied at open. Queries are runtime queries over sqlx's `Any` driver and
//! written once for both backends (`$n` placeholders in order of appearance,
//! `ON CONFLICT` upserts, integers as BIGINT, times as Unix milliseconds,
//! JSON as text). Every connection's data is addressed by connection id.
//! Writes that belong together (a batch of records, a state commit, a key
//! rotation) are one transaction each.

mod browser;
mod ingest;
mod lifecycle;
mod model;
pub mod runner;

pub use browser::*;
pub(crate) use ingest::append_events;
pub use lifecycle::*;
pub use model::*;

use crate::protocol::{self as p, CollectionMode};
use crate::vault::Sealed;
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;
use std::path::Path;

/// The columns each row type's `from_row` reads: one list per table, so a
/// query and its decoder cannot drift apart.
macro_rules! select_connections {
    () => {
        "SELECT connection_id, connector_id, status, display_name, account_identity, binding_metadata, \
         created_at, updated_at, revoked_at, activated_at, browser_session FROM connections"
    };
}
macro_rules! select_credentials {
    () => {
        "SELECT connection_id, kind, field_names, status, format_version, key_id, nonce, ciphertext, fingerprint, \
         captured_at, rotated_at FROM credentials"
    };
}
macro_rules! select_pending {
    () => {
        "SELECT interaction_id, run_id, connection_id, request_id, kind, message, schema, stream, timeout_seconds, \
         created_at, CAST(CASE WHEN screenshot IS NULL THEN 0 ELSE 1 END AS BIGINT) AS has_screenshot FROM interactions"
    };
}
macro_rules! select_runs {
    () => {
        "SELECT run_id, connection_id, connector_id, status, run_trigger, collection_mode, started_at, finished_at, \
         records_emitted, records_written, failure_reason, failure_message, resource_report FROM runs"
    };
}

mod readers;
mod summary;
pub use summary::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL (use sqlite://PATH or postgres://…): {0}")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} {id} does not exist")]
    NotFound { what: &'static str, id: String },
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    #[error("connection {0} already has a run in progress")]
    RunInProgress(String),
    /// A batch arrived for a connection that was revoked or deleted meanwhile:
    /// nothing of it was written.
    #[error("connection {0} was revoked or deleted; the run's records are not kept")]
    ConnectionClosed(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database, shared by everything in one host process.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: connections for the owner's views (see `readers`).
    readers: Option<std::sync::Arc<readers::Readers>>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random id with a prefix: `con_3f9a…` (24 hex characters).
pub fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("system randomness");
    format!("{prefix}_{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn json_text(v: &Value) -> String {
    // The same compact text as `Display`, without going through `fmt`.
    serde_json::to_string(v).expect("a JSON value serializes")
}

fn parse_json(s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("stored JSON does not parse: {e}")))
}

impl Store {
    /// Open (creating if needed) and migrate the database at `url`.
    pub async fn open(url: &str) -> Result<Store> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let mut opts = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        if backend == Backend::Sqlite {
            // A file this process opened cannot go stale: no ping (a round
            // trip through the connection's worker thread) before each use.
            opts = opts.test_before_acquire(false).after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 5000",
                    ] {
                        sqlx::query(pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = opts.connect(url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let readers = (backend == Backend::Sqlite).then(|| std::sync::Arc::new(readers::Readers::new(url)));
        Ok(Store { pool, backend, readers })
    }

    /// The embedded default: one SQLite file, created if missing.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        Store::open(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// A write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so it waits for other writers (busy timeout)
    /// instead of failing when it later upgrades a read snapshot.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A consistent copy of an SQLite database at `path` (a new file), taken
    /// while the database is in use (`VACUUM INTO`). PostgreSQL deployments
    /// back up with `pg_dump` instead.
    pub async fn backup_sqlite(&self, path: &Path) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::UnsupportedUrl(
                "backing up PostgreSQL is pg_dump's job, not the host's".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(readers) = &self.readers {
            readers.close().await;
        }
        self.pool.close().await;
    }

    // ---- connectors ----------------------------------------------------

    pub async fn upsert_connector(
        &self,
        manifest: &crate::manifest::Manifest,
        plugin_sha256: Option<&str>,
    ) -> Result<()> {
        let text = serde_json::to_string(manifest).expect("manifests serialize");
        sqlx::query(
            "INSERT INTO connectors (connector_id, version, manifest, plugin_sha256, availability, updated_at)
             VALUES ($1, $2, $3, $4, 'available', $5)
             ON CONFLICT (connector_id) DO UPDATE SET version = excluded.version, manifest = excluded.manifest,
               plugin_sha256 = excluded.plugin_sha256, availability = 'available', updated_at = excluded.updated_at",
        )
        .bind(&manifest.connector_id)
        .bind(&manifest.version)
        .bind(text)
        .bind(plugin_sha256.map(str::to_owned))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Mark a connector `available`, `unavailable` (its plugin is gone; its
    /// connections and data stay) or `removed`.
    pub async fn set_connector_availability(&self, connector_id: &str, availability: &str) -> Result<()> {
        sqlx::query("UPDATE connectors SET availability = $1, updated_at = $2 WHERE connector_id = $3")
            .bind(availability)
            .bind(now_ms())
            .bind(connector_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The manifest last recorded for a connector (also when its plugin is gone).
    pub async fn connector_manifest(&self, connector_id: &str) -> Result<Option<crate::manifest::Manifest>> {
        let row = sqlx::query("SELECT manifest FROM connectors WHERE connector_id = $1")
            .bind(connector_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let text: String = r.try_get("manifest")?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored manifest: {e}")))
        })
        .transpose()
    }

    pub async fn connector_availability(&self, connector_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT availability FROM connectors WHERE connector_id = $1")
            .bind(connector_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("availability")).transpose()?)
    }

    // ---- connections ---------------------------------------------------

    pub async fn create_connection(&self, new: NewConnection) -> Result<Connection> {
        let now = now_ms();
        let c = Connection {
            connection_id: new.connection_id.unwrap_or_else(|| new_id("con")),
            connector_id: new.connector_id,
            status: new.status,
            display_name: new.display_name,
            account_identity: None,
            binding_metadata: new.binding_metadata,
            created_at: now,
            updated_at: now,
            revoked_at: None,
            activated_at: (new.status == ConnectionStatus::Active).then_some(now),
            browser_session: new.browser_session,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO connections (connection_id, connector_id, status, display_name, account_identity,
               binding_metadata, created_at, updated_at, activated_at, browser_session)
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
        )
        .bind(&c.connection_id)
        .bind(&c.connector_id)
        .bind(c.status.as_str())
        .bind(c.display_name.clone())
        .bind(json_text(&c.binding_metadata))
        .bind(now)
        .bind(now)
        .bind(c.activated_at)
        .bind(c.browser_session.as_str())
        .execute(&mut *tx)
        .await?;
        // Every connection's creation is on the audit trail, in the same transaction.
        let audit = Audit::ok("connection.create", &c.connection_id)
            .detail(serde_json::json!({ "connector_id": c.connector_id, "status": c.status.as_str() }));
        lifecycle::write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(c)
    }

    pub async fn connection(&self, connection_id: &str) -> Result<Option<Connection>> {
        let row = sqlx::query(concat!(select_connections!(), " WHERE connection_id = $1"))
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Connection::from_row(&r)).transpose()
    }

    /// Every connection, oldest first.
    pub async fn all_connections(&self) -> Result<Vec<Connection>> {
        let rows = sqlx::query(concat!(select_connections!(), " ORDER BY created_at, connection_id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(Connection::from_row).collect()
    }

    pub async fn connections_of(&self, connector_id: &str) -> Result<Vec<Connection>> {
        let rows = sqlx::query(concat!(
            select_connections!(),
            " WHERE connector_id = $1 ORDER BY created_at, connection_id"
        ))
        .bind(connector_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Connection::from_row).collect()
    }

    pub async fn set_connection_status(&self, connection_id: &str, status: ConnectionStatus) -> Result<()> {
        let done = sqlx::query("UPDATE connections SET status = $1, updated_at = $2 WHERE connection_id = $3")
            .bind(status.as_str())
            .bind(now_ms())
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "connection",
                id: connection_id.to_owned(),
            });
        }
        Ok(())
    }

    // ---- credentials ---------------------------------------------------

    /// Store (or replace, on rotation) a connection's sealed bundle.
    pub async fn put_credential(&self, connection_id: &str, sealed: &Sealed) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO credentials (connection_id, kind, field_names, status, format_version, key_id, nonce,
               ciphertext, fingerprint, captured_at, rotated_at)
             VALUES ($1, $2, $3, 'active', $4, $5, $6, $7, $8, $9, NULL)
             ON CONFLICT (connection_id) DO UPDATE SET kind = excluded.kind, field_names = excluded.field_names,
               status = 'active', format_version = excluded.format_version, key_id = excluded.key_id,
               nonce = excluded.nonce, ciphertext = excluded.ciphertext, fingerprint = excluded.fingerprint,
               rotated_at = excluded.captured_at",
        )
        .bind(connection_id)
        .bind(&sealed.kind)
        .bind(serde_json::to_string(&sealed.field_names).expect("names serialize"))
        .bind(sealed.format_version)
        .bind(&sealed.key_id)
        .bind(sealed.nonce.clone())
        .bind(sealed.ciphertext.clone())
        .bind(&sealed.fingerprint)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn credential(&self, connection_id: &str) -> Result<Option<StoredCredential>> {
        let row = sqlx::query(concat!(select_credentials!(), " WHERE connection_id = $1"))
            .bind(connection_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| StoredCredential::from_row(&r)).transpose()
    }

    pub async fn all_credentials(&self) -> Result<Vec<StoredCredential>> {
        let rows = sqlx::query(concat!(select_credentials!(), " ORDER BY connection_id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(StoredCredential::from_row).collect()
    }

    pub async fn set_credential_status(&self, connection_id: &str, status: CredentialStatus) -> Result<()> {
        let done = sqlx::query("UPDATE credentials SET status = $1 WHERE connection_id = $2")
            .bind(status.as_str())
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "credential of connection",
                id: connection_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The provider refused the stored credential during run `run_id`: mark
    /// it rejected, with an audit entry, in one transaction. Returns whether
    /// the connection had a credential to mark.
    pub async fn mark_credential_rejected(&self, connection_id: &str, run_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query("UPDATE credentials SET status = 'rejected' WHERE connection_id = $1")
            .bind(connection_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if marked {
            let audit = Audit::ok("connection.credential.rejected", connection_id)
                .run(run_id)
                .detail(serde_json::json!({ "cause": "provider_refused_during_run" }));
            lifecycle::write_audit(&mut tx, &audit).await?;
        }
        tx.commit().await?;
        Ok(marked)
    }

    /// Replace the seal of every listed bundle in one transaction (key rotation).
    pub async fn reseal_all(&self, resealed: &[(String, Sealed)], profiles: &[(String, Vec<u8>)]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (connection_id, sealed) in profiles {
            sqlx::query("UPDATE browser_profiles SET sealed = $1 WHERE connection_id = $2")
                .bind(sealed.clone())
                .bind(connection_id)
                .execute(&mut *tx)
                .await?;
        }
        // Answers and screenshots in transit are sealed under the old key;
        // no run is live to take them (rotation refuses while serving).
        sqlx::query("UPDATE interactions SET answer = NULL, screenshot = NULL WHERE answer IS NOT NULL OR screenshot IS NOT NULL")
            .execute(&mut *tx)
            .await?;
        for (connection_id, s) in resealed {
            let done = sqlx::query(
                "UPDATE credentials SET key_id = $1, nonce = $2, ciphertext = $3, fingerprint = $4, format_version = $5
                 WHERE connection_id = $6",
            )
            .bind(&s.key_id)
            .bind(s.nonce.clone())
            .bind(s.ciphertext.clone())
            .bind(&s.fingerprint)
            .bind(s.format_version)
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::NotFound {
                    what: "credential of connection",
                    id: connection_id.clone(),
                });
            }
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- runs and their timeline ----------------------------------------

    pub async fn create_run(
        &self,
        run_id: &str,
        connection_id: &str,
        connector_id: &str,
        trigger: Trigger,
        mode: CollectionMode,
    ) -> Result<()> {
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO runs (run_id, connection_id, connector_id, status, run_trigger, collection_mode, started_at,
               runner, heartbeat_at)
             VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $6)",
        )
        .bind(run_id)
        .bind(connection_id)
        .bind(connector_id)
        .bind(trigger.as_str())
        .bind(mode.as_str())
        .bind(now)
        .bind(runner::id())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            // The unique index admits one running run per connection, whichever host started it.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::RunInProgress(connection_id.to_owned()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A run refused before it started: stored finished, so it never counts
    /// as in progress.
    pub async fn create_refused_run(
        &self,
        run_id: &str,
        connection_id: &str,
        connector_id: &str,
        trigger: Trigger,
        mode: CollectionMode,
        end: &RunEnd,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO runs (run_id, connection_id, connector_id, status, run_trigger, collection_mode, started_at,
               finished_at, failure_reason, failure_message, resource_report, runner)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)",
        )
        .bind(run_id)
        .bind(connection_id)
        .bind(connector_id)
        .bind(end.status.as_str())
        .bind(trigger.as_str())
        .bind(mode.as_str())
        .bind(now)
        .bind(end.failure_reason.clone())
        .bind(end.failure_message.clone())
        .bind(json_text(&end.resource_report))
        .bind(runner::id())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- serving hosts --------------------------------------------------

    /// Record this process as a serving host (or refresh its heartbeat).
    pub async fn host_heartbeat(&self) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO hosts (runner, started_at, heartbeat_at) VALUES ($1, $2, $2)
             ON CONFLICT (runner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(runner::id())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// This process stopped serving.
    pub async fn host_stopped(&self) -> Result<()> {
        sqlx::query("DELETE FROM hosts WHERE runner = $1")
            .bind(runner::id())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Other serving hosts on this database that are alive (their process
    /// exists on this machine, or their heartbeat is fresh), by runner id.
    pub async fn live_hosts(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT runner, heartbeat_at FROM hosts ORDER BY runner")
            .fetch_all(&self.pool)
            .await?;
        let now = now_ms();
        let mut live = Vec::new();
        for r in rows {
            let id: String = r.try_get("runner")?;
            let heartbeat: i64 = r.try_get("heartbeat_at")?;
            if id != runner::id() && runner::alive(Some(&id), Some(heartbeat), now) {
                live.push(id);
            }
        }
        Ok(live)
    }

    /// Say that this process is still running `run_id`.
    pub async fn heartbeat(&self, run_id: &str) -> Result<()> {
        sqlx::query("UPDATE runs SET heartbeat_at = $1 WHERE run_id = $2 AND status = 'running'")
            .bind(now_ms())
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_run(&self, run_id: &str, end: &RunEnd) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = $1, finished_at = $2, records_emitted = $3, records_written = $4,
               failure_reason = $5, failure_message = $6, resource_report = $7
             WHERE run_id = $8",
        )
        .bind(end.status.as_str())
        .bind(now_ms())
        .bind(end.records_emitted)
        .bind(end.records_written)
        .bind(end.failure_reason.clone())
        .bind(end.failure_message.clone())
        .bind(json_text(&end.resource_report))
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Close every run in progress whose process is gone: on this machine,
    /// its process no longer exists; on another, neither the run nor the
    /// serving host that holds it has sent a heartbeat for
    /// [`runner::STALE_AFTER_MS`]. Runs of live processes (a `serve` next
    /// to a CLI command, other hosts) are left alone. Each closed run ends as
    /// `failed` with reason `host_interrupted`, its pending interactions are
    /// cancelled and its timeline gets its terminal event, in one transaction
    /// per run. Returns how many runs were closed.
    pub async fn fail_interrupted_runs(&self) -> Result<u64> {
        // A serving host's heartbeat (in `hosts`) vouches for every run it
        // holds; a process that does not serve refreshes its run's own.
        let rows = sqlx::query(
            "SELECT r.run_id, r.runner, r.heartbeat_at, h.heartbeat_at AS host_heartbeat_at
             FROM runs r LEFT JOIN hosts h ON h.runner = r.runner
             WHERE r.status = 'running'",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = now_ms();
        let mut failed = 0;
        for r in rows {
            let run_id: String = r.try_get("run_id")?;
            let runner_id: Option<String> = r.try_get("runner")?;
            let run_heartbeat: Option<i64> = r.try_get("heartbeat_at")?;
            let host_heartbeat: Option<i64> = r.try_get("host_heartbeat_at")?;
            let heartbeat = run_heartbeat.max(host_heartbeat);
            if runner::alive(runner_id.as_deref(), heartbeat, now) {
                continue;
            }
            let message = "the host stopped while the run was in progress";
            let mut tx = self.begin_write().await?;
            // What its whole batches left in the store.
            let records_written: i64 = sqlx::query("SELECT COUNT(*) AS n FROM records WHERE run_id = $1")
                .bind(&run_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            let closed = sqlx::query(
                "UPDATE runs SET status = 'failed', finished_at = $1, failure_reason = 'host_interrupted',
                   failure_message = $2, records_written = $3
                 WHERE run_id = $4 AND status = 'running'",
            )
            .bind(now)
            .bind(message)
            .bind(records_written)
            .bind(&run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if closed == 0 {
                continue; // another process closed it first
            }
            let cancelled = sqlx::query(
                "UPDATE interactions SET status = 'cancelled', resolved_at = $1 WHERE run_id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(&run_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut events = Vec::new();
            if cancelled > 0 {
                events.push(RunEvent::new(
                    "run.interaction_completed",
                    serde_json::json!({ "status": "cancelled", "reason": "host_interrupted" }),
                ));
            }
            let end = RunEndEvent {
                status: RunStatus::Failed,
                reason: Some("host_interrupted".into()),
                error_code: None,
                message: Some(message.into()),
                rule: None,
                records_emitted: 0,
                records_written: records_written.max(0) as u64,
                checkpoint_commit_status: CommitStatus::NotCommitted,
                state_streams_staged: 0,
                state_streams_committed: 0,
                known_gaps: Vec::new(),
                streams_behind: Vec::new(),
                reconciled_deletions: 0,
            };
            events.push(RunEvent::new(
                end.kind(),
                serde_json::to_value(&end).expect("a run's end serializes"),
            ));
            append_events(&mut tx, &run_id, &events).await?;
            tx.commit().await?;
            failed += 1;
        }
        Ok(failed)
    }

    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        let row = sqlx::query(concat!(select_runs!(), " WHERE run_id = $1"))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| RunRow::from_row(&r)).transpose()
    }

    /// When the last full-refresh run of a connection that succeeded
    /// finished (Unix ms): where a periodic full-refresh policy counts from
    /// (see `runtime::FullRefreshPolicy`).
    pub async fn last_full_refresh_at(&self, connection_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(finished_at) AS at FROM runs
             WHERE connection_id = $1 AND collection_mode = 'full_refresh' AND status = 'succeeded'",
        )
        .bind(connection_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("at")?)
    }

    /// Full-refresh reconciliation: in one transaction, delete the records of
    /// each of `streams` that run `run_id` did not write (a succeeded full
    /// refresh emits every record its provider still has, so the others were
    /// deleted upstream). Which streams qualify is the runtime's decision
    /// (`runtime::reconcile`); this only deletes. Returns how many records
    /// each stream lost, in the order given. Refused like a batch when the
    /// connection was revoked or deleted meanwhile.
    pub async fn reconcile(&self, connection_id: &str, run_id: &str, streams: &[String]) -> Result<Vec<(String, u64)>> {
        let mut tx = self.begin_write().await?;
        let status = sqlx::query("SELECT status FROM connections WHERE connection_id = $1")
            .bind(connection_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>("status"))
            .transpose()?;
        if !matches!(status.as_deref(), Some("active" | "draft" | "paused")) {
            return Err(StoreError::ConnectionClosed(connection_id.to_owned()));
        }
        let mut deleted = Vec::with_capacity(streams.len());
        let mut counts = std::collections::BTreeMap::new();
        for stream in streams {
            let n = sqlx::query("DELETE FROM records WHERE connection_id = $1 AND stream = $2 AND run_id <> $3")
                .bind(connection_id)
                .bind(stream)
                .bind(run_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            deleted.push((stream.clone(), n));
            if n > 0 {
                counts.insert(stream.clone(), -(n as i64));
            }
        }
        summary::apply_counts(&mut tx, connection_id, &counts).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    /// A connection's runs, newest first.
    pub async fn runs_of(&self, connection_id: &str) -> Result<Vec<RunRow>> {
        let rows = sqlx::query(concat!(
            select_runs!(),
            " WHERE connection_id = $1 ORDER BY started_at DESC, run_id DESC"
        ))
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RunRow::from_row).collect()
    }

    pub async fn events(&self, run_id: &str) -> Result<Vec<RunEvent>> {
        let rows = sqlx::query("SELECT kind, data FROM run_events WHERE run_id = $1 ORDER BY seq")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RunEvent {
                    kind: r.try_get("kind")?,
                    data: parse_json(&r.try_get::<String, _>("data")?)?,
                })
            })
            .collect()
    }

    /// Write one batch of records and the events that go with it, atomically.
    /// Returns the number of records written.
    pub async fn write_batch(
        &self,
        connection_id: &str,
        run_id: &str,
        records: &[p::Record],
        events: &[RunEvent],
    ) -> Result<u64> {
        let batch = Batch {
            connection_id,
            run_id,
            records,
            events,
            time_fields: &Default::default(),
            activate_draft: false,
        };
        Ok(self.write(batch).await?.written)
    }

    pub async fn append_events(&self, run_id: &str, events: &[RunEvent]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append_events(&mut tx, run_id, events).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn records(&self, connection_id: &str, stream: &str) -> Result<Vec<StoredRecord>> {
        let rows = sqlx::query(
            "SELECT stream, record_key, data, emitted_at, run_id, record_time FROM records
             WHERE connection_id = $1 AND stream = $2 ORDER BY record_key",
        )
        .bind(connection_id)
        .bind(stream)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredRecord::from_row).collect()
    }

    pub async fn count_records(&self, connection_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM records WHERE connection_id = $1")
            .bind(connection_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    // ---- state ----------------------------------------------------------

    pub async fn state(&self, connection_id: &str, namespace: &Namespace) -> Result<p::StateMap> {
        let rows = sqlx::query("SELECT stream, cursor FROM stream_state WHERE connection_id = $1 AND namespace = $2")
            .bind(connection_id)
            .bind(namespace.key())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("stream")?,
                    parse_json(&r.try_get::<String, _>("cursor")?)?,
                ))
            })
            .collect()
    }

    /// Commit checkpoints of one run in one transaction.
    pub async fn commit_state(
        &self,
        connection_id: &str,
        namespace: &Namespace,
        run_id: &str,
        cursors: &[(String, Value)],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        for (stream, cursor) in cursors {
            sqlx::query(
                "INSERT INTO stream_state (connection_id, namespace, stream, cursor, run_id, committed_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (connection_id, namespace, stream) DO UPDATE SET cursor = excluded.cursor,
                   run_id = excluded.run_id, committed_at = excluded.committed_at",
            )
            .bind(connection_id)
            .bind(namespace.key())
            .bind(stream)
            .bind(json_text(cursor))
            .bind(run_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- interactions ---------------------------------------------------

    /// A question of a run is pending; its id. The answer is not part of it.
    /// A question is pending, with the screenshot (sealed by the caller to
    /// the run) it carries, if any.
    pub async fn open_interaction(
        &self,
        run_id: &str,
        connection_id: &str,
        req: &p::Interaction,
        screenshot: Option<Vec<u8>>,
    ) -> Result<String> {
        let id = new_id("ixn");
        sqlx::query(
            "INSERT INTO interactions (interaction_id, run_id, connection_id, request_id, kind, message, schema, status,
               created_at, stream, timeout_seconds, screenshot)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(run_id)
        .bind(connection_id)
        .bind(&req.request_id)
        .bind(req.kind.as_str())
        .bind(&req.message)
        .bind(req.schema.as_ref().map(json_text))
        .bind(now_ms())
        .bind(req.stream.clone())
        .bind(req.timeout_seconds.map(i64::from))
        .bind(screenshot)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// How a question ended. Any answer still waiting, and its screenshot,
    /// are erased.
    pub async fn resolve_interaction(&self, interaction_id: &str, status: p::InteractionStatus) -> Result<()> {
        let status = match status {
            p::InteractionStatus::Success => "answered",
            p::InteractionStatus::Cancelled => "cancelled",
            p::InteractionStatus::Timeout => "timed_out",
        };
        sqlx::query(
            "UPDATE interactions SET status = $1, resolved_at = $2, answer = NULL, screenshot = NULL
             WHERE interaction_id = $3",
        )
        .bind(status)
        .bind(now_ms())
        .bind(interaction_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A run that ended leaves nothing pending: open interactions become
    /// cancelled, and an answer nobody took is erased.
    pub async fn cancel_pending_interactions(&self, run_id: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE interactions SET status = 'cancelled', resolved_at = $1, answer = NULL, screenshot = NULL
             WHERE run_id = $2 AND status = 'pending'",
        )
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Questions waiting for the owner (pending, not answered yet), of every
    /// host, oldest first; of one run or connection when given.
    pub async fn pending_interactions(
        &self,
        run_id: Option<&str>,
        connection_id: Option<&str>,
    ) -> Result<Vec<PendingInteraction>> {
        let rows = sqlx::query(concat!(
            select_pending!(),
            " WHERE status = 'pending' AND answered_at IS NULL
               AND ($1 IS NULL OR run_id = $1) AND ($2 IS NULL OR connection_id = $2)
             ORDER BY created_at, interaction_id"
        ))
        .bind(run_id)
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(PendingInteraction::from_row).collect()
    }

    /// One question waiting for the owner.
    pub async fn pending_interaction(&self, interaction_id: &str) -> Result<Option<PendingInteraction>> {
        let row = sqlx::query(concat!(
            select_pending!(),
            " WHERE interaction_id = $1 AND status = 'pending' AND answered_at IS NULL"
        ))
        .bind(interaction_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| PendingInteraction::from_row(&r)).transpose()
    }

    /// The owner answered: the answer (sealed by the caller) waits for the
    /// run's host to take it. Returns false when the question is no longer
    /// waiting (answered already, or its run ended): nothing is written then.
    pub async fn submit_answer(
        &self,
        interaction_id: &str,
        status: p::InteractionStatus,
        sealed: &[u8],
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE interactions SET answered_at = $1, answer_status = $2, answer = $3
             WHERE interaction_id = $4 AND status = 'pending' AND answered_at IS NULL",
        )
        .bind(now_ms())
        .bind(status.as_str())
        .bind(sealed.to_vec())
        .bind(interaction_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Take the answer to a run's pending question, if one arrived: the
    /// sealed answer is returned once and erased from the store.
    pub async fn take_answer(&self, run_id: &str) -> Result<Option<(String, p::InteractionStatus, Vec<u8>)>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT interaction_id, answer_status, answer FROM interactions
             WHERE run_id = $1 AND status = 'pending' AND answered_at IS NOT NULL AND answer IS NOT NULL",
        )
        .bind(run_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: String = row.try_get("interaction_id")?;
        let status: String = row.try_get("answer_status")?;
        let sealed: Vec<u8> = row.try_get("answer")?;
        sqlx::query("UPDATE interactions SET answer = NULL WHERE interaction_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let status = status
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("interaction answer status {status:?}")))?;
        Ok(Some((id, status, sealed)))
    }

    /// Runs of this process with a waiting answer or a cancel request from
    /// any host: (run id, answer waiting, cancel requested). Two queries per
    /// host that read only what waits (partial indexes
    /// `interactions_answered` and `runs_cancel_requested`), however many
    /// runs it parks.
    pub async fn runs_needing_attention(&self) -> Result<Vec<(String, bool, bool)>> {
        let answered = sqlx::query(
            "SELECT DISTINCT i.run_id FROM interactions i JOIN runs r ON r.run_id = i.run_id
             WHERE i.status = 'pending' AND i.answer IS NOT NULL AND r.runner = $1 AND r.status = 'running'",
        )
        .bind(runner::id())
        .fetch_all(&self.pool)
        .await?;
        let cancelled = sqlx::query(
            "SELECT run_id FROM runs WHERE status = 'running' AND cancel_requested_at IS NOT NULL AND runner = $1",
        )
        .bind(runner::id())
        .fetch_all(&self.pool)
        .await?;
        let mut needing: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for r in &answered {
            needing.entry(r.try_get("run_id")?).or_default().0 = true;
        }
        for r in &cancelled {
            needing.entry(r.try_get("run_id")?).or_default().1 = true;
        }
        Ok(needing.into_iter().map(|(id, (a, c))| (id, a, c)).collect())
    }

    /// Ask whichever host runs `run_id` to cancel it. Returns false when it
    /// is not running (anymore).
    pub async fn request_cancel(&self, run_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE runs SET cancel_requested_at = $1 WHERE run_id = $2 AND status = 'running'
               AND cancel_requested_at IS NULL",
        )
        .bind(now_ms())
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(true);
        }
        Ok(self.run(run_id).await?.is_some_and(|r| r.status == RunStatus::Running))
    }

    pub async fn interactions(&self, run_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT kind, status FROM interactions WHERE run_id = $1 ORDER BY created_at")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("kind")?, r.try_get("status")?)))
            .collect()
    }
}
