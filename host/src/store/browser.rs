//! What a browser-backed connection keeps between runs: its sealed login
//! material (one per connection, never shared), whether it keeps any at all
//! (`browser_session`: persistent or ephemeral), and the sealed screenshot a
//! question carries while it is pending.
//!
//! Nothing here is plaintext: the runtime seals before it writes and opens
//! after it reads, bound to the connection (profiles) or the run (screenshots).

use super::{Result, Store, StoreError, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// Whether a connection's browser login material outlives its runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrowserSessionMode {
    /// Sealed between runs, reused by the next run (the default).
    #[default]
    Persistent,
    /// Destroyed at every run's end, whatever the end; nothing is stored.
    Ephemeral,
}

impl BrowserSessionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BrowserSessionMode::Persistent => "persistent",
            BrowserSessionMode::Ephemeral => "ephemeral",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self> {
        match s {
            "persistent" => Ok(BrowserSessionMode::Persistent),
            "ephemeral" => Ok(BrowserSessionMode::Ephemeral),
            other => Err(StoreError::Corrupt(format!("browser session mode {other:?}"))),
        }
    }
}

/// A connection's stored login material, sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredProfile {
    pub connection_id: String,
    /// The sealed archive (see `browser::SealedProfile`).
    pub sealed: Vec<u8>,
    /// Size of the packed archive before sealing.
    pub bytes: i64,
    /// The account the browser was logged into when it was kept.
    pub account: Option<String>,
    /// The run that kept it.
    pub run_id: String,
    pub updated_at: i64,
}

impl std::fmt::Debug for StoredProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredProfile")
            .field("connection_id", &self.connection_id)
            .field("bytes", &self.bytes)
            .field("account", &self.account)
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The connection's sealed login material, when it has any.
    pub async fn browser_profile(&self, connection_id: &str) -> Result<Option<StoredProfile>> {
        let row = sqlx::query(
            "SELECT connection_id, sealed, bytes, account, run_id, updated_at FROM browser_profiles
             WHERE connection_id = $1",
        )
        .bind(connection_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredProfile {
                connection_id: r.try_get("connection_id")?,
                sealed: r.try_get("sealed")?,
                bytes: r.try_get("bytes")?,
                account: r.try_get("account")?,
                run_id: r.try_get("run_id")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .transpose()
    }

    /// Keep (or replace) the connection's sealed login material, unless the
    /// connection was revoked, deleted or made ephemeral meanwhile; returns
    /// whether it was kept.
    pub async fn save_browser_profile(
        &self,
        connection_id: &str,
        run_id: &str,
        sealed: &[u8],
        bytes: u64,
        account: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let open = sqlx::query(
            "SELECT COUNT(*) AS n FROM connections
             WHERE connection_id = $1 AND status IN ('draft', 'active') AND browser_session = 'persistent'",
        )
        .bind(connection_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>("n")?
            == 1;
        if !open {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO browser_profiles (connection_id, sealed, bytes, account, run_id, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (connection_id) DO UPDATE SET sealed = excluded.sealed, bytes = excluded.bytes,
               account = excluded.account, run_id = excluded.run_id, updated_at = excluded.updated_at",
        )
        .bind(connection_id)
        .bind(sealed.to_vec())
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(account.map(str::to_owned))
        .bind(run_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Forget the connection's login material; returns whether there was any.
    pub async fn delete_browser_profile(&self, connection_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM browser_profiles WHERE connection_id = $1")
            .bind(connection_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every stored profile (for a key rotation).
    pub async fn all_browser_profiles(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT connection_id, sealed FROM browser_profiles ORDER BY connection_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("connection_id")?, r.try_get("sealed")?)))
            .collect()
    }

    /// Make a connection's browser login material persistent or ephemeral.
    /// Becoming ephemeral forgets what is stored, in the same transaction.
    pub async fn set_browser_session_mode(&self, connection_id: &str, mode: BrowserSessionMode) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("UPDATE connections SET browser_session = $1, updated_at = $2 WHERE connection_id = $3")
            .bind(mode.as_str())
            .bind(now_ms())
            .bind(connection_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: "connection",
                id: connection_id.to_owned(),
            });
        }
        if mode == BrowserSessionMode::Ephemeral {
            sqlx::query("DELETE FROM browser_profiles WHERE connection_id = $1")
                .bind(connection_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The sealed screenshot of a pending question, with the run it is
    /// sealed to; `None` when the question is not pending or has none.
    pub async fn interaction_screenshot(&self, interaction_id: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT run_id, screenshot FROM interactions
             WHERE interaction_id = $1 AND status = 'pending' AND screenshot IS NOT NULL",
        )
        .bind(interaction_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("run_id")?, r.try_get("screenshot")?)))
            .transpose()
    }
}
