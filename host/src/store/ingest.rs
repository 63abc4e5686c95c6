//! The records and timeline entries of one batch, written as multi-row
//! statements inside the batch's transaction.
//!
//! Per (stream, key) only the batch's last record counts: an upsert replaces
//! every column of the row and a delete removes it, so the last operation on
//! a key decides what the table holds after the batch, whatever came before
//! it in the batch. The batch is first reduced to that last operation per
//! key; the remaining keys are distinct, so deletes and upserts are written
//! in any order and no statement touches a key twice (PostgreSQL refuses an
//! `ON CONFLICT DO UPDATE` that would).
//!
//! Rows go in chunks whose sizes are powers of two up to [`MAX_CHUNK`], so a
//! table has at most a handful of distinct statements, each prepared once
//! per database connection. The largest statement binds `8 × MAX_CHUNK`
//! parameters, far below SQLite's (32,766) and PostgreSQL's (65,535) limits.

use super::{Result, RunEvent, json_text, key_text};
use crate::protocol as p;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The most rows one statement writes.
pub(super) const MAX_CHUNK: usize = 256;
/// Distinct chunk sizes: 1, 2, 4, … MAX_CHUNK.
const SIZES: usize = MAX_CHUNK.trailing_zeros() as usize + 1;

/// `rows` cut into chunks of MAX_CHUNK, then of the binary digits of the rest.
fn chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let size = MAX_CHUNK.min(1 << rows.len().ilog2());
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// How a backend's statements number their parameters. SQLite gets
/// anonymous `?`: sqlx looks up each parameter's name before binding it,
/// and SQLite finds a name by walking the statement's list of names, which
/// would make binding a chunk quadratic in its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// `$1, $2, …` (PostgreSQL).
    Numbered,
    /// `?, ?, …` (SQLite).
    Anonymous,
}

impl Style {
    fn of(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Style {
        if tx.backend_name() == "SQLite" {
            Style::Anonymous
        } else {
            Style::Numbered
        }
    }

    /// Parameter number `i` (from 1).
    fn param(self, i: usize) -> String {
        match self {
            Style::Numbered => format!("${i}"),
            Style::Anonymous => "?".into(),
        }
    }

    /// `n` tuples of `width` parameters numbered after the first `before`:
    /// `($3,$4),($5,$6)` or `(?,?),(?,?)`.
    fn tuples(self, before: usize, n: usize, width: usize) -> String {
        let tuple = |t: usize| {
            let params: Vec<String> = (0..width).map(|j| self.param(before + t * width + j + 1)).collect();
            format!("({})", params.join(","))
        };
        (0..n).map(tuple).collect::<Vec<_>>().join(",")
    }
}

/// The statements of one kind, per style, per chunk size; built once.
type Cache = [OnceLock<Vec<String>>; 2];

/// The statement for a chunk of `n` rows.
fn statement(cache: &'static Cache, build: fn(Style, usize) -> String, style: Style, n: usize) -> &'static str {
    debug_assert!(n.is_power_of_two() && n <= MAX_CHUNK);
    let slot = &cache[usize::from(style == Style::Anonymous)];
    &slot.get_or_init(|| (0..SIZES).map(|i| build(style, 1 << i)).collect())[n.trailing_zeros() as usize]
}

/// Per row: connection, stream, key, data, emitted_at, run, written_at,
/// record time. On PostgreSQL each row written says whether it was new
/// (`xmax = 0`: no earlier version of the row), for the stream's count.
fn upsert_sql(style: Style, n: usize) -> String {
    let returning = match style {
        Style::Numbered => " RETURNING stream, (xmax = 0) AS inserted",
        Style::Anonymous => "",
    };
    format!(
        "INSERT INTO records (connection_id, stream, record_key, data, emitted_at, run_id, written_at, record_time)
         VALUES {} ON CONFLICT (connection_id, stream, record_key) DO UPDATE SET data = excluded.data,
           emitted_at = excluded.emitted_at, run_id = excluded.run_id, written_at = excluded.written_at,
           record_time = excluded.record_time{returning}",
        style.tuples(0, n, 8)
    )
}

/// Connection, stream, then the keys.
fn delete_sql(style: Style, n: usize) -> String {
    format!(
        "DELETE FROM records WHERE connection_id = {} AND stream = {} AND record_key IN {}",
        style.param(1),
        style.param(2),
        style.tuples(2, 1, n)
    )
}

/// As [`upsert_sql`], but a row whose key is there already is left alone:
/// what the statement changed is the number of new rows (SQLite).
fn insert_new_sql(style: Style, n: usize) -> String {
    format!(
        "INSERT INTO records (connection_id, stream, record_key, data, emitted_at, run_id, written_at, record_time)
         VALUES {} ON CONFLICT (connection_id, stream, record_key) DO NOTHING",
        style.tuples(0, n, 8)
    )
}

/// Per event: run, seq, at, kind, data.
fn events_sql(style: Style, n: usize) -> String {
    format!(
        "INSERT INTO run_events (run_id, seq, at, kind, data) VALUES {}",
        style.tuples(0, n, 5)
    )
}

static UPSERT: Cache = [OnceLock::new(), OnceLock::new()];
static DELETE: Cache = [OnceLock::new(), OnceLock::new()];
static EVENTS: Cache = [OnceLock::new(), OnceLock::new()];
static INSERT_NEW: Cache = [OnceLock::new(), OnceLock::new()];

/// What a batch's records did.
pub(super) struct Written {
    /// Records that were upserts (deletes not counted), duplicates included.
    pub accepted: u64,
    /// How each stream's record count changed (streams that changed only).
    pub counts: BTreeMap<String, i64>,
}

struct Upsert<'a> {
    stream: &'a str,
    key: String,
    data: String,
    emitted_at: &'a str,
    time: &'a str,
}

/// Write a batch's records; returns how many were upserts and how each
/// stream's record count changed: a delete counts the rows it removed, an
/// upsert counts when its key was not in the table before (looked up in
/// the batch's transaction, just before the write).
pub(super) async fn write_records(
    tx: &mut Tx,
    connection_id: &str,
    run_id: &str,
    now: i64,
    records: &[p::Record],
    time_fields: &BTreeMap<String, String>,
) -> Result<Written> {
    let keys: Vec<String> = records.iter().map(|r| key_text(&r.key)).collect();
    // Which record is the last of its key in the batch.
    let last = {
        let mut at: HashMap<(&str, &str), usize> = HashMap::with_capacity(records.len());
        for (i, (r, k)) in records.iter().zip(&keys).enumerate() {
            at.insert((r.stream.as_str(), k.as_str()), i);
        }
        let mut last = vec![false; records.len()];
        for i in at.into_values() {
            last[i] = true;
        }
        last
    };
    let mut upserts = Vec::with_capacity(records.len());
    let mut deletes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut accepted = 0u64;
    for ((r, key), last) in records.iter().zip(keys).zip(last) {
        let delete = r.op.as_deref() == Some("delete");
        accepted += u64::from(!delete);
        if !last {
            continue;
        }
        if delete {
            deletes.entry(&r.stream).or_default().push(key);
            continue;
        }
        let time = time_fields
            .get(&r.stream)
            .and_then(|f| r.data.as_ref()?.get(f)?.as_str())
            .unwrap_or(&r.emitted_at);
        upserts.push(Upsert {
            stream: &r.stream,
            key,
            data: r.data.as_ref().map(json_text).unwrap_or_else(|| "{}".into()),
            emitted_at: &r.emitted_at,
            time,
        });
    }
    let style = Style::of(tx);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (stream, keys) in &deletes {
        for chunk in chunks(keys) {
            let mut q = sqlx::query(statement(&DELETE, delete_sql, style, chunk.len()))
                .bind(connection_id)
                .bind(*stream);
            for k in chunk {
                q = q.bind(k.as_str());
            }
            let removed = q.execute(&mut **tx).await?.rows_affected() as i64;
            *counts.entry((*stream).to_owned()).or_default() -= removed;
        }
    }
    match style {
        Style::Anonymous => upsert_counting_new(tx, connection_id, run_id, now, upserts, &mut counts).await?,
        Style::Numbered => {
            // PostgreSQL says per row written whether it was new.
            let sizes: Vec<usize> = chunks(&upserts).map(<[Upsert]>::len).collect();
            let mut rows = upserts.into_iter();
            for size in sizes {
                let mut q = sqlx::query(statement(&UPSERT, upsert_sql, style, size));
                // Key and data are moved into the statement, not copied.
                for u in rows.by_ref().take(size) {
                    q = q
                        .bind(connection_id)
                        .bind(u.stream)
                        .bind(u.key)
                        .bind(u.data)
                        .bind(u.emitted_at)
                        .bind(run_id)
                        .bind(now)
                        .bind(u.time);
                }
                for row in q.fetch_all(&mut **tx).await? {
                    if row.try_get::<bool, _>("inserted")? {
                        *counts.entry(row.try_get("stream")?).or_default() += 1;
                    }
                }
            }
        }
    }
    counts.retain(|_, n| *n != 0);
    Ok(Written { accepted, counts })
}

/// SQLite's upserts, one stream at a time: each chunk is first inserted
/// where its keys are new (the rows it changed are the stream's new
/// records), and only when some key was there already is the chunk written
/// again as an upsert. A first sync, all new keys, costs one statement per
/// chunk; SQLite cannot tell an upsert's inserts from its updates.
async fn upsert_counting_new(
    tx: &mut Tx,
    connection_id: &str,
    run_id: &str,
    now: i64,
    mut upserts: Vec<Upsert<'_>>,
    counts: &mut BTreeMap<String, i64>,
) -> Result<()> {
    let style = Style::Anonymous;
    // Keys are distinct (one row per key), so their order does not matter.
    upserts.sort_by(|a, b| a.stream.cmp(b.stream));
    let mut rest = upserts.as_slice();
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|u| u.stream == first.stream).count();
        let (group, tail) = rest.split_at(same);
        rest = tail;
        for chunk in chunks(group) {
            let bind = |sql: &'static str| {
                let mut q = sqlx::query(sql);
                for u in chunk {
                    q = q
                        .bind(connection_id)
                        .bind(u.stream)
                        .bind(u.key.as_str())
                        .bind(u.data.as_str())
                        .bind(u.emitted_at)
                        .bind(run_id)
                        .bind(now)
                        .bind(u.time);
                }
                q
            };
            let new = bind(statement(&INSERT_NEW, insert_new_sql, style, chunk.len()))
                .execute(&mut **tx)
                .await?
                .rows_affected();
            *counts.entry(first.stream.to_owned()).or_default() += new as i64;
            if (new as usize) < chunk.len() {
                bind(statement(&UPSERT, upsert_sql, style, chunk.len()))
                    .execute(&mut **tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Append timeline entries to a run, numbered after its last one.
pub(crate) async fn append_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    run_id: &str,
    events: &[RunEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM run_events WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await?;
    let mut seq: i64 = row.try_get("seq")?;
    let now = super::now_ms();
    let data: Vec<String> = events.iter().map(|e| json_text(&e.data)).collect();
    let style = Style::of(tx);
    let mut offset = 0;
    for chunk in chunks(events) {
        let mut q = sqlx::query(statement(&EVENTS, events_sql, style, chunk.len()));
        for (e, d) in chunk.iter().zip(&data[offset..]) {
            seq += 1;
            q = q
                .bind(run_id)
                .bind(seq)
                .bind(now)
                .bind(e.kind.as_str())
                .bind(d.as_str());
        }
        offset += chunk.len();
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_cut_into_power_of_two_chunks_up_to_the_maximum() {
        let sizes = |n: usize| chunks(&vec![0u8; n]).map(<[u8]>::len).collect::<Vec<_>>();
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), [1]);
        assert_eq!(sizes(250), [128, 64, 32, 16, 8, 2]);
        assert_eq!(sizes(MAX_CHUNK * 2 + 3), [MAX_CHUNK, MAX_CHUNK, 2, 1]);
    }

    #[test]
    fn statements_number_their_parameters_in_order() {
        assert_eq!(
            delete_sql(Style::Numbered, 2),
            "DELETE FROM records WHERE connection_id = $1 AND stream = $2 AND record_key IN ($3,$4)"
        );
        assert_eq!(
            delete_sql(Style::Anonymous, 2),
            "DELETE FROM records WHERE connection_id = ? AND stream = ? AND record_key IN (?,?)"
        );
        assert_eq!(
            events_sql(Style::Numbered, 2),
            "INSERT INTO run_events (run_id, seq, at, kind, data) VALUES ($1,$2,$3,$4,$5),($6,$7,$8,$9,$10)"
        );
        assert!(upsert_sql(Style::Anonymous, 2).contains("VALUES (?,?,?,?,?,?,?,?),(?,?,?,?,?,?,?,?) ON CONFLICT"));
        assert_eq!(
            statement(&UPSERT, upsert_sql, Style::Numbered, 4),
            upsert_sql(Style::Numbered, 4)
        );
        assert_eq!(
            statement(&UPSERT, upsert_sql, Style::Anonymous, 4),
            upsert_sql(Style::Anonymous, 4)
        );
    }
}
