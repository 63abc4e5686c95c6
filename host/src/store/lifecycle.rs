//! Connection lifecycle writes (activation, revoke, reconnect, rename,
//! delete, retiring a draft), the audit trail, and paged record reads.
//! Each operation is one transaction that checks the state it expects.

use super::{
    ConnectionStatus, Result, RunEvent, Store, StoreError, StoredRecord, append_events, json_text, now_ms, parse_json,
};
use crate::protocol as p;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;
use std::collections::BTreeMap;

/// One emit batch to write.
pub struct Batch<'a> {
    pub connection_id: &'a str,
    pub run_id: &'a str,
    pub records: &'a [p::Record],
    pub events: &'a [RunEvent],
    /// stream → the data field that holds each record's own time.
    pub time_fields: &'a BTreeMap<String, String>,
    /// Promote a draft connection to active when this batch accepts a record.
    pub activate_draft: bool,
}

pub struct BatchResult {
    pub written: u64,
    /// This batch made a draft connection active.
    pub activated: bool,
}

/// Why a lifecycle change was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("connection {0} does not exist")]
    NotFound(String),
    #[error("connection {id} is {status}; {action} needs {expected}")]
    WrongState {
        id: String,
        status: &'static str,
        action: &'static str,
        expected: &'static str,
    },
    #[error("connection {0} has a run in progress; cancel it or wait for it to finish")]
    RunActive(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LifecycleError {
    fn from(e: sqlx::Error) -> Self {
        LifecycleError::Store(e.into())
    }
}

/// What deleting a connection erased.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeleteReport {
    pub connection_id: String,
    pub deleted_records: i64,
    pub deleted_streams: i64,
    pub deleted_runs: i64,
    pub credential_deleted: bool,
}

/// One audit entry: who did what to which connection, with what outcome.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    pub at: i64,
    pub action: String,
    pub connection_id: Option<String>,
    pub run_id: Option<String>,
    pub outcome: String,
    /// Ids, kinds, codes and counts; never a secret.
    #[schema(value_type = Value)]
    pub detail: Value,
}

/// An audit entry to write. `detail` must never hold a secret: ids, kinds,
/// codes and counts only.
pub struct Audit<'a> {
    pub action: &'a str,
    pub connection_id: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub outcome: &'a str,
    pub detail: Value,
}

impl<'a> Audit<'a> {
    pub fn ok(action: &'a str, connection_id: &'a str) -> Self {
        Audit {
            action,
            connection_id: Some(connection_id),
            run_id: None,
            outcome: "ok",
            detail: json!({}),
        }
    }
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
    pub fn outcome(mut self, outcome: &'a str) -> Self {
        self.outcome = outcome;
        self
    }
    pub fn run(mut self, run_id: &'a str) -> Self {
        self.run_id = Some(run_id);
        self
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

pub(super) async fn write_audit(tx: &mut Tx, a: &Audit<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_events (at, action, connection_id, run_id, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(a.action)
    .bind(a.connection_id)
    .bind(a.run_id)
    .bind(a.outcome)
    .bind(json_text(&a.detail))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The status of a connection inside a transaction.
async fn status_in(tx: &mut Tx, id: &str) -> Result<ConnectionStatus, LifecycleError> {
    let row = sqlx::query("SELECT status FROM connections WHERE connection_id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| LifecycleError::NotFound(id.to_owned()))?;
    Ok(ConnectionStatus::parse(&row.try_get::<String, _>("status")?)?)
}

fn wrong(id: &str, status: ConnectionStatus, action: &'static str, expected: &'static str) -> LifecycleError {
    LifecycleError::WrongState {
        id: id.to_owned(),
        status: status.as_str(),
        action,
        expected,
    }
}

/// A batch whose rows are ready to write ([`Store::prepare`]).
pub struct PreparedBatch<'a> {
    batch: Batch<'a>,
    rows: super::ingest::Rows<'a>,
}

impl Store {
    /// Write one batch; see [`Batch`].
    pub async fn write(&self, b: Batch<'_>) -> Result<BatchResult> {
        self.write_prepared(Store::prepare(b)).await
    }

    /// The work of writing a batch that needs no database (each key's last
    /// operation, the text of each row), so that it can be done while the
    /// batch ahead of it is being written.
    pub fn prepare(b: Batch<'_>) -> PreparedBatch<'_> {
        PreparedBatch {
            rows: super::ingest::Rows::new(b.records, b.time_fields),
            batch: b,
        }
    }

    /// Write a prepared batch in one transaction; see [`Batch`].
    pub async fn write_prepared(&self, prepared: PreparedBatch<'_>) -> Result<BatchResult> {
        let PreparedBatch { batch: b, rows } = prepared;
        let mut tx = self.begin_write().await?;
        // A revoked or deleted connection keeps nothing more: checked in the
        // batch's own transaction. On PostgreSQL the row is share-locked, so
        // a concurrent revoke waits for this batch and its `revoked_at` comes
        // after it; SQLite serialises writers anyway.
        let lock = match self.backend {
            super::Backend::Postgres => " FOR SHARE",
            super::Backend::Sqlite => "",
        };
        let status = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT status FROM connections WHERE connection_id = $1{lock}"
        )))
        .bind(b.connection_id)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<String, _>("status"))
        .transpose()?;
        if !matches!(status.as_deref(), Some("active" | "draft" | "paused")) {
            return Err(StoreError::ConnectionClosed(b.connection_id.to_owned()));
        }
        let now = now_ms();
        let written = super::ingest::write_records(&mut tx, b.connection_id, b.run_id, now, &rows).await?;
        super::summary::apply_counts(&mut tx, b.connection_id, &written.counts).await?;
        let upserts = written.accepted;
        let mut events = b.events.to_vec();
        let mut activated = false;
        if b.activate_draft && upserts > 0 {
            // Guarded: only a draft becomes active, and only once; a
            // concurrent revoke or delete wins.
            activated = sqlx::query(
                "UPDATE connections SET status = 'active', activated_at = $1, updated_at = $1
                 WHERE connection_id = $2 AND status = 'draft'",
            )
            .bind(now)
            .bind(b.connection_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if activated {
                events.push(RunEvent::new(
                    "connection.activated",
                    json!({ "records_accepted": upserts }),
                ));
                let audit = Audit::ok("connection.activate", b.connection_id)
                    .run(b.run_id)
                    .detail(json!({ "cause": "first_ingest", "records_accepted": upserts }));
                write_audit(&mut tx, &audit).await?;
            }
        }
        append_events(&mut tx, b.run_id, &events).await?;
        tx.commit().await?;
        Ok(BatchResult {
            written: b.records.len() as u64,
            activated,
        })
    }

    /// Make a draft active without a record (a reconnect whose setup run
    /// succeeded). Returns whether it changed anything.
    pub async fn activate_after_setup_run(&self, id: &str, run_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE connections SET status = 'active', updated_at = $1
             WHERE connection_id = $2 AND status = 'draft' AND activated_at IS NOT NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            let audit = Audit::ok("connection.activate", id)
                .run(run_id)
                .detail(json!({ "cause": "reconnect_run_succeeded" }));
            write_audit(&mut tx, &audit).await?;
            append_events(&mut tx, run_id, &[RunEvent::new("connection.activated", json!({}))]).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    /// Stop future collection; records, state and credential stay.
    pub async fn revoke_connection(&self, id: &str) -> Result<i64, LifecycleError> {
        let mut tx = self.begin_write().await?;
        let status = status_in(&mut tx, id).await?;
        if !matches!(status, ConnectionStatus::Active | ConnectionStatus::Paused) {
            return Err(wrong(id, status, "revoke", "an active connection"));
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE connections SET status = 'revoked', revoked_at = $1, updated_at = $1 WHERE connection_id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Its run in progress, on whichever host, is asked to stop.
        sqlx::query(
            "UPDATE runs SET cancel_requested_at = $1
             WHERE connection_id = $2 AND status = 'running' AND cancel_requested_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        write_audit(&mut tx, &Audit::ok("connection.revoke", id)).await?;
        tx.commit().await?;
        Ok(now)
    }

    /// Start the setup path again for a revoked connection: it becomes a
    /// draft (records, state and credential kept) until a setup run succeeds.
    pub async fn reconnect_connection(&self, id: &str) -> Result<(), LifecycleError> {
        let mut tx = self.begin_write().await?;
        let status = status_in(&mut tx, id).await?;
        if status != ConnectionStatus::Revoked {
            return Err(wrong(id, status, "reconnect", "a revoked connection"));
        }
        sqlx::query(
            "UPDATE connections SET status = 'draft', revoked_at = NULL, updated_at = $1,
               activated_at = COALESCE(activated_at, $1)
             WHERE connection_id = $2",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        write_audit(&mut tx, &Audit::ok("connection.reconnect", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rename_connection(&self, id: &str, display_name: &str) -> Result<(), LifecycleError> {
        let mut tx = self.begin_write().await?;
        status_in(&mut tx, id).await?;
        sqlx::query("UPDATE connections SET display_name = $1, updated_at = $2 WHERE connection_id = $3")
            .bind(display_name)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &Audit::ok("connection.rename", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replace a connection's settings (START.settings of its next runs);
    /// the caller checked them against the connector's schema.
    pub async fn set_settings(&self, id: &str, settings: &Value) -> Result<(), LifecycleError> {
        let mut tx = self.begin_write().await?;
        status_in(&mut tx, id).await?;
        sqlx::query("UPDATE connections SET binding_metadata = $1, updated_at = $2 WHERE connection_id = $3")
            .bind(json_text(settings))
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &Audit::ok("connection.settings", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The non-secret account identity a probe reported.
    pub async fn set_account_identity(&self, id: &str, identity: &Value) -> Result<()> {
        sqlx::query("UPDATE connections SET account_identity = $1, updated_at = $2 WHERE connection_id = $3")
            .bind(json_text(identity))
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Erase one connection: records, state, runs, interactions, credential
    /// and the connection itself, in one transaction. Refused while a run of
    /// it is in progress. The audit trail keeps the deletion.
    pub async fn delete_connection(&self, id: &str, action: &str) -> Result<DeleteReport, LifecycleError> {
        let mut tx = self.begin_write().await?;
        status_in(&mut tx, id).await?;
        let running = sqlx::query("SELECT COUNT(*) AS n FROM runs WHERE connection_id = $1 AND status = 'running'")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?;
        if running > 0 {
            return Err(LifecycleError::RunActive(id.to_owned()));
        }
        let counts = sqlx::query(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT stream) AS streams FROM records WHERE connection_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let deleted_records: i64 = counts.try_get("n")?;
        let deleted_streams: i64 = counts.try_get("streams")?;
        sqlx::query("DELETE FROM run_events WHERE run_id IN (SELECT run_id FROM runs WHERE connection_id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let mut erased = BTreeMap::new();
        for table in [
            "records",
            "stream_state",
            "interactions",
            "runs",
            "credentials",
            "browser_profiles",
        ] {
            let n = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE connection_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            erased.insert(table, n as i64);
        }
        sqlx::query("DELETE FROM connections WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let report = DeleteReport {
            connection_id: id.to_owned(),
            deleted_records,
            deleted_streams,
            deleted_runs: erased["runs"],
            credential_deleted: erased["credentials"] > 0,
        };
        let audit = Audit::ok(action, id).detail(serde_json::to_value(&report).unwrap_or_default());
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Remove a first-time draft whose credential was rejected: no setup row
    /// stays behind. Refused unless it is a draft without a credential.
    pub async fn retire_draft(&self, id: &str, reason: &str) -> Result<(), LifecycleError> {
        let mut tx = self.begin_write().await?;
        let status = status_in(&mut tx, id).await?;
        let has_credential = sqlx::query("SELECT COUNT(*) AS n FROM credentials WHERE connection_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get::<i64, _>("n")?
            > 0;
        if status != ConnectionStatus::Draft || has_credential {
            return Err(wrong(id, status, "retire", "a draft without a credential"));
        }
        sqlx::query("DELETE FROM connections WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let audit = Audit::ok("connection.draft.retire", id).detail(json!({ "reason": reason }));
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- audit ---------------------------------------------------------

    pub async fn audit(&self, a: Audit<'_>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        write_audit(&mut tx, &a).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit entries, oldest first; of one connection when given.
    pub async fn audit_events(&self, connection_id: Option<&str>, after: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT seq, at, action, connection_id, run_id, outcome, detail FROM audit_events
             WHERE ($1 IS NULL OR connection_id = $1) AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(connection_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    action: r.try_get("action")?,
                    connection_id: r.try_get("connection_id")?,
                    run_id: r.try_get("run_id")?,
                    outcome: r.try_get("outcome")?,
                    detail: parse_json(&r.try_get::<String, _>("detail")?)?,
                })
            })
            .collect()
    }

    // ---- reads ---------------------------------------------------------

    /// One page of a connection's records of a stream, in key order, after
    /// `after_key`, with `since <= record_time < until` when given.
    pub async fn records_page(&self, q: &RecordQuery<'_>) -> Result<Vec<StoredRecord>> {
        let rows = sqlx::query(
            "SELECT stream, record_key, data, emitted_at, run_id, record_time FROM records
             WHERE connection_id = $1 AND stream = $2 AND record_key > $3
               AND ($4 IS NULL OR record_time >= $4) AND ($5 IS NULL OR record_time < $5)
             ORDER BY record_key LIMIT $6",
        )
        .bind(q.connection_id)
        .bind(q.stream)
        .bind(q.after_key.unwrap_or(""))
        .bind(q.since)
        .bind(q.until)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(StoredRecord::from_row).collect()
    }

    /// Record counts per stream of a connection.
    pub async fn record_counts(&self, connection_id: &str) -> Result<BTreeMap<String, i64>> {
        Ok(self
            .record_counts_of(&[connection_id])
            .await?
            .remove(connection_id)
            .unwrap_or_default())
    }

    /// Timeline entries of a run after `after_seq` (for live streaming).
    pub async fn events_after(&self, run_id: &str, after_seq: i64) -> Result<Vec<(i64, RunEvent)>> {
        let rows = sqlx::query("SELECT seq, kind, data FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq")
            .bind(run_id)
            .bind(after_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("seq")?,
                    RunEvent {
                        kind: r.try_get("kind")?,
                        data: parse_json(&r.try_get::<String, _>("data")?)?,
                    },
                ))
            })
            .collect()
    }
}

/// A paged, filtered read of one stream.
pub struct RecordQuery<'a> {
    pub connection_id: &'a str,
    pub stream: &'a str,
    pub after_key: Option<&'a str>,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub limit: i64,
}
