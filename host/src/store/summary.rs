//! The reads behind the owner's views of many connections at once (setup
//! status, the connection list): each reads a bounded slice of history —
//! at most three runs per connection, only the timeline kinds the views
//! project, counts kept beside the records — so their cost does not grow
//! with how much a connection has collected, and a page of connections
//! costs a fixed number of queries, not a few per connection.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

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
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(Connection::from_row).collect()
    }

    /// A connection, its credential and the bounded slice of its history
    /// that its setup status projects (see [`Store::status_history`]), in
    /// one query: the owner's most frequent read is one round trip.
    pub async fn connection_for_status(
        &self,
        id: &str,
        also: Option<&str>,
        kinds: &[&str],
    ) -> Result<Option<ConnectionForStatus>> {
        // Built once per number of kinds: it is the same text every time.
        static SQL: [OnceLock<String>; 9] = [const { OnceLock::new() }; 9];
        let build = || {
            format!(
                "SELECT c.*, {}, {}, e.seq AS event_seq, e.kind AS event_kind, e.data AS event_data
                 FROM ({} WHERE connection_id = $2) c
                 LEFT JOIN credentials k ON k.connection_id = c.connection_id
                 LEFT JOIN runs x ON x.connection_id = c.connection_id AND x.run_id IN ({})
                 LEFT JOIN run_events e ON e.run_id = x.run_id AND e.kind IN ({})",
                prefixed(select_credentials!(), "k", "k_"),
                run_columns(),
                select_connections!(),
                picks(&[2]),
                placeholders(3, kinds.len().max(1))
            )
        };
        let sql = match SQL.get(kinds.len()) {
            Some(slot) => slot.get_or_init(build).clone(),
            None => build(),
        };
        let rows = bind_kinds(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(also).bind(id), kinds)
            .fetch_all(&mut *self.read().await?)
            .await?;
        let Some(first) = rows.first() else { return Ok(None) };
        let credential = match first.try_get::<Option<String>, _>("k_connection_id")? {
            Some(_) => Some(StoredCredential::from_columns(first, "k_")?),
            None => None,
        };
        let connection = Connection::from_row(first)?;
        let (runs, events) = history_of_rows(&rows)?;
        Ok(Some(ConnectionForStatus {
            connection,
            credential,
            runs,
            events,
        }))
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
        let rows = q.fetch_all(&mut *self.read().await?).await?;
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
    pub async fn status_history(&self, ids: &[&str], also: Option<&str>, kinds: &[&str]) -> Result<StatusHistory> {
        if ids.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        let sql = format!(
            "SELECT {}, e.seq AS event_seq, e.kind AS event_kind, e.data AS event_data
             FROM runs x
             LEFT JOIN run_events e ON e.run_id = x.run_id AND e.kind IN ({})
             WHERE x.connection_id IN ({}) AND x.run_id IN ({})",
            run_columns(),
            placeholders(2, kinds.len().max(1)),
            placeholders(kinds.len().max(1) + 2, ids.len()),
            picks(&(kinds.len().max(1) + 2..kinds.len().max(1) + 2 + ids.len()).collect::<Vec<_>>()),
        );
        let mut q = bind_kinds(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(also), kinds);
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&mut *self.read().await?).await?;
        history_of_rows(&rows)
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
        for r in q.fetch_all(&mut *self.read().await?).await? {
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
        q.fetch_all(&mut *self.read().await?)
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
        for r in q.fetch_all(&mut *self.read().await?).await? {
            out.entry(r.try_get("connection_id")?)
                .or_default()
                .insert(r.try_get("stream")?, r.try_get("records")?);
        }
        Ok(out)
    }
}

/// Runs newest first, and their timeline entries of the asked kinds by run
/// id, in order.
pub type StatusHistory = (Vec<RunRow>, HashMap<String, Vec<RunEvent>>);

/// What [`Store::connection_for_status`] reads.
#[derive(Debug)]
pub struct ConnectionForStatus {
    pub connection: Connection,
    pub credential: Option<StoredCredential>,
    /// At most three runs (four with a requested one), newest first.
    pub runs: Vec<RunRow>,
    /// Their timeline entries of the asked kinds, by run id, in order.
    pub events: HashMap<String, Vec<RunEvent>>,
}

/// `SELECT a, b FROM t` as `alias.a AS {prefix}a, alias.b AS {prefix}b`.
fn prefixed(select: &str, alias: &str, prefix: &str) -> String {
    let columns = select
        .strip_prefix("SELECT ")
        .and_then(|s| s.rsplit_once(" FROM "))
        .map_or("", |(cols, _)| cols);
    columns
        .split(',')
        .map(|c| format!("{alias}.{0} AS {prefix}{0}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of the runs table `x`, each named `r_…` so that a run
/// joins to another row without a clash of names.
fn run_columns() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| prefixed(select_runs!(), "x", "r_"))
}

/// The runs a setup status projects, for the connections whose ids are
/// bound at these parameter numbers: the one asked for (`$1`, may be
/// null), and per connection its newest collection run, its newest
/// finished one and its newest bootstrap.
fn picks(id_params: &[usize]) -> String {
    let newest = |n: usize, cond: &str| {
        format!(
            "(SELECT run_id FROM runs WHERE connection_id = ${n} AND {cond}
              ORDER BY started_at DESC, run_id DESC LIMIT 1)"
        )
    };
    let mut picks = vec!["$1".to_owned()];
    for &n in id_params {
        picks.push(newest(n, "run_trigger <> 'bootstrap'"));
        picks.push(newest(n, "run_trigger <> 'bootstrap' AND status <> 'running'"));
        picks.push(newest(n, "run_trigger = 'bootstrap'"));
    }
    picks.join(", ")
}

/// The timeline kinds, bound in order (a null when there are none, so
/// that `IN (…)` is never empty).
fn bind_kinds<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    kinds: &[&'q str],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    if kinds.is_empty() {
        q = q.bind(None::<&str>);
    }
    for k in kinds {
        q = q.bind(*k);
    }
    q
}

/// The runs (`r_…` columns) and timeline entries of rows joined as in
/// [`Store::status_history`]: runs newest first, entries in order.
fn history_of_rows(rows: &[sqlx::any::AnyRow]) -> Result<StatusHistory> {
    let mut runs: Vec<RunRow> = Vec::new();
    let mut events: Vec<(String, i64, RunEvent)> = Vec::new();
    for r in rows {
        let Some(run_id) = r.try_get::<Option<String>, _>("r_run_id")? else {
            continue;
        };
        if let Some(seq) = r.try_get::<Option<i64>, _>("event_seq")? {
            let event = RunEvent {
                kind: r.try_get("event_kind")?,
                data: parse_json(&r.try_get::<String, _>("event_data")?)?,
            };
            events.push((run_id.clone(), seq, event));
        }
        if !runs.iter().any(|k| k.run_id == run_id) {
            runs.push(RunRow::from_columns(r, "r_")?);
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
