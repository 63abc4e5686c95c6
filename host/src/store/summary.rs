//! The reads behind the owner's views of many connections at once (setup
//! status, the connection list): each reads a bounded slice of history —
//! at most three runs per connection, only the timeline kinds the views
//! project, counts kept beside the records — so their cost does not grow
//! with how much a connection has collected, and a page of connections
//! costs a fixed number of queries, not a few per connection.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// `$first, $first+1, …` for `n` bound values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which connections a page lists.
#[derive(Clone, Debug, Default)]
pub struct ConnectionFilter {
    pub status: Option<ConnectionStatus>,
    pub connector_id: Option<String>,
}

/// Where a page of connections starts: after this one, in creation order.
/// Its text form is opaque to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: i64,
    pub connection_id: String,
}

impl PageCursor {
    pub fn of(c: &Connection) -> Self {
        PageCursor {
            created_at: c.created_at,
            connection_id: c.connection_id.clone(),
        }
    }

    pub fn encode(&self) -> String {
        format!("{}.{}", self.created_at, self.connection_id)
    }

    /// `None` for text no page handed out.
    pub fn decode(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let valid_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        Some(PageCursor {
            created_at: at.parse().ok()?,
            connection_id: valid_id.then(|| id.to_owned())?,
        })
    }
}

impl Store {
    /// Up to `limit` connections after `after`, oldest first.
    pub async fn connections_page(
        &self,
        filter: &ConnectionFilter,
        after: Option<&PageCursor>,
        limit: u32,
    ) -> Result<Vec<Connection>> {
        let rows = sqlx::query(concat!(
            select_connections!(),
            " WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR connector_id = $2)
               AND (created_at > $3 OR (created_at = $3 AND connection_id > $4))
             ORDER BY created_at, connection_id LIMIT $5"
        ))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.connector_id.as_deref())
        .bind(after.map_or(i64::MIN, |c| c.created_at))
        .bind(after.map_or("", |c| c.connection_id.as_str()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Connection::from_row).collect()
    }

    /// A connection and its credential, in one query.
    pub async fn connection_with_credential(&self, id: &str) -> Result<Option<(Connection, Option<StoredCredential>)>> {
        let row = sqlx::query(concat!(
            "SELECT c.*, k.connection_id AS k_connection_id, k.kind AS k_kind, k.field_names AS k_field_names,
               k.status AS k_status, k.format_version AS k_format_version, k.key_id AS k_key_id, k.nonce AS k_nonce,
               k.ciphertext AS k_ciphertext, k.fingerprint AS k_fingerprint, k.captured_at AS k_captured_at,
               k.rotated_at AS k_rotated_at
             FROM (",
            select_connections!(),
            " WHERE connection_id = $1) c LEFT JOIN credentials k ON k.connection_id = c.connection_id"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let credential = match r.try_get::<Option<String>, _>("k_connection_id")? {
            Some(_) => Some(StoredCredential::from_columns(&r, "k_")?),
            None => None,
        };
        Ok(Some((Connection::from_row(&r)?, credential)))
    }

    /// The credentials of these connections, by connection id.
    pub async fn credentials_of(&self, ids: &[&str]) -> Result<HashMap<String, StoredCredential>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "{} WHERE connection_id IN ({})",
            select_credentials!(),
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| StoredCredential::from_row(r).map(|c| (c.connection_id.clone(), c)))
            .collect()
    }

    /// The runs setup status reads, newest first, with their timeline
    /// entries of `kinds` (by run id, in order): of each connection its
    /// newest collection run, its newest finished collection run and its
    /// newest bootstrap; and `also` (a run asked for by id, of any of
    /// them). One query of indexed lookups, however many runs and
    /// timeline entries the connections have.
    pub async fn status_history(
        &self,
        ids: &[&str],
        also: Option<&str>,
        kinds: &[&str],
    ) -> Result<(Vec<RunRow>, HashMap<String, Vec<RunEvent>>)> {
        if ids.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        let newest = |n: usize, cond: &str| {
            format!(
                "(SELECT run_id FROM runs WHERE connection_id = ${n} AND {cond}
                  ORDER BY started_at DESC, run_id DESC LIMIT 1)"
            )
        };
        let mut picks = vec!["$1".to_owned()];
        for i in 0..ids.len() {
            let n = i + 2;
            picks.push(newest(n, "run_trigger <> 'bootstrap'"));
            picks.push(newest(n, "run_trigger <> 'bootstrap' AND status <> 'running'"));
            picks.push(newest(n, "run_trigger = 'bootstrap'"));
        }
        let sql = format!(
            "SELECT r.*, e.seq AS event_seq, e.kind AS event_kind, e.data AS event_data
             FROM ({} WHERE connection_id IN ({}) AND run_id IN ({})) r
             LEFT JOIN run_events e ON e.run_id = r.run_id AND e.kind IN ({})",
            select_runs!(),
            placeholders(2, ids.len()),
            picks.join(", "),
            placeholders(ids.len() + 2, kinds.len().max(1))
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(also);
        for id in ids {
            q = q.bind(*id);
        }
        if kinds.is_empty() {
            q = q.bind(None::<&str>);
        }
        for k in kinds {
            q = q.bind(*k);
        }
        let mut runs: Vec<RunRow> = Vec::new();
        let mut events: Vec<(String, i64, RunEvent)> = Vec::new();
        for r in q.fetch_all(&self.pool).await? {
            let run = RunRow::from_row(&r)?;
            if let Some(seq) = r.try_get::<Option<i64>, _>("event_seq")? {
                let event = RunEvent {
                    kind: r.try_get("event_kind")?,
                    data: parse_json(&r.try_get::<String, _>("event_data")?)?,
                };
                events.push((run.run_id.clone(), seq, event));
            }
            if !runs.iter().any(|k| k.run_id == run.run_id) {
                runs.push(run);
            }
        }
        runs.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
        events.sort_by_key(|(_, seq, _)| *seq);
        let mut by_run: HashMap<String, Vec<RunEvent>> = HashMap::new();
        for (run_id, _, event) in events {
            by_run.entry(run_id).or_default().push(event);
        }
        Ok((runs, by_run))
    }

    /// The questions these runs wait on, by run id, oldest first.
    pub async fn pending_of_runs(&self, run_ids: &[&str]) -> Result<HashMap<String, Vec<PendingInteraction>>> {
        if run_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "{} WHERE status = 'pending' AND answered_at IS NULL AND run_id IN ({})
             ORDER BY created_at, interaction_id",
            select_pending!(),
            placeholders(1, run_ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in run_ids {
            q = q.bind(*id);
        }
        let mut out: HashMap<String, Vec<PendingInteraction>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            let p = PendingInteraction::from_row(&r)?;
            out.entry(p.run_id.clone()).or_default().push(p);
        }
        Ok(out)
    }

    /// Which of these connections keep sealed browser login material.
    pub async fn profiles_stored(&self, ids: &[&str]) -> Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let sql = format!(
            "SELECT connection_id FROM browser_profiles WHERE connection_id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok(r.try_get("connection_id")?))
            .collect()
    }

    /// How many records each stream of these connections holds, by
    /// connection id (kept beside the records, not counted on read).
    pub async fn record_counts_of(&self, ids: &[&str]) -> Result<HashMap<String, BTreeMap<String, i64>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT connection_id, stream, records FROM stream_counts WHERE connection_id IN ({}) AND records > 0",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        let mut out: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        for r in q.fetch_all(&self.pool).await? {
            out.entry(r.try_get("connection_id")?)
                .or_default()
                .insert(r.try_get("stream")?, r.try_get("records")?);
        }
        Ok(out)
    }
}

/// Apply count changes, in the transaction that made them.
pub(super) async fn apply_counts(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    connection_id: &str,
    delta: &BTreeMap<String, i64>,
) -> Result<()> {
    for (stream, n) in delta {
        sqlx::query(
            "INSERT INTO stream_counts (connection_id, stream, records) VALUES ($1, $2, $3)
             ON CONFLICT (connection_id, stream) DO UPDATE SET records = stream_counts.records + excluded.records",
        )
        .bind(connection_id)
        .bind(stream.as_str())
        .bind(*n)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
