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
//! Upserts are written a stream at a time, so the values every row of a
//! statement shares (connection, stream, run, write time) are bound once
//! per statement and each row binds only its own four (key, data,
//! `emitted_at`, record time):
//!
//! - SQLite: `INSERT … SELECT` from a multi-row `VALUES` in chunks whose
//!   sizes are powers of two up to [`MAX_CHUNK`], so a table has at most a
//!   handful of distinct statements, each prepared once per connection. The
//!   largest binds `4 × MAX_CHUNK + 4` parameters, far below SQLite's limit
//!   (32,766).
//! - PostgreSQL: one statement per stream and [`PG_CHUNK`] rows, its four
//!   per-row columns bound as four text arrays and turned back into rows by
//!   `unnest`: the server parses and plans a statement of eight parameters
//!   instead of one of thousands (the `Any` driver binds no array type, so
//!   an array goes as its text literal, see [`text_array`]). Each chunk is
//!   tried as a plain insert first ([`upsert_pg`]).

use super::{Result, RunEvent, json_text, key_text};
use crate::protocol as p;
use serde_json::Value;
use sqlx::{Acquire, Row};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// The most rows one SQLite statement writes (and one chunk of deletes or
/// timeline entries on either backend).
pub(super) const MAX_CHUNK: usize = 256;
/// The most rows one PostgreSQL upsert writes: a whole batch of the SDK
/// (4,096 messages) in one statement.
pub(super) const PG_CHUNK: usize = 4096;
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

/// The columns of a record row, in the order the statements fill them.
const COLUMNS: &str = "connection_id, stream, record_key, data, emitted_at, run_id, written_at, record_time";
/// What an upsert of a key that is there already changes: every column but
/// the key's.
const UPDATE: &str = "DO UPDATE SET data = excluded.data, emitted_at = excluded.emitted_at, run_id = excluded.run_id,
           written_at = excluded.written_at, record_time = excluded.record_time";

/// SQLite: connection, stream, run, written_at, then per row key, data,
/// emitted_at, record time. `WHERE true` tells SQLite's parser that the
/// `ON` after it starts the upsert clause, not a join constraint.
fn upsert_sql(_: Style, n: usize) -> String {
    format!(
        "INSERT INTO records ({COLUMNS})
         SELECT ?, ?, column1, column2, column3, ?, ?, column4 FROM (VALUES {}) WHERE true
         ON CONFLICT (connection_id, stream, record_key) {UPDATE}",
        Style::Anonymous.tuples(0, n, 4)
    )
}

/// As [`upsert_sql`], but a row whose key is there already is left alone:
/// what the statement changed is the number of new rows.
fn insert_new_sql(_: Style, n: usize) -> String {
    format!(
        "INSERT INTO records ({COLUMNS})
         SELECT ?, ?, column1, column2, column3, ?, ?, column4 FROM (VALUES {}) WHERE true
         ON CONFLICT (connection_id, stream, record_key) DO NOTHING",
        Style::Anonymous.tuples(0, n, 4)
    )
}

/// PostgreSQL, when every key is new: connection, stream, run, written_at,
/// then the keys, data, `emitted_at`s and record times as four text arrays
/// of one length.
fn pg_insert_sql() -> String {
    format!(
        "INSERT INTO records ({COLUMNS})
         SELECT $1, $2, r.k, r.d, r.e, $3, $4, r.t
         FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) AS r(k, d, e, t)"
    )
}

/// As [`pg_insert_sql`], replacing the rows of keys stored already. It
/// answers how many of the rows were new (`xmax = 0`: no earlier version of
/// the row), for the stream's count.
fn pg_upsert_sql() -> String {
    format!(
        "WITH written AS (
           INSERT INTO records ({COLUMNS})
           SELECT $1, $2, r.k, r.d, r.e, $3, $4, r.t
           FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) AS r(k, d, e, t)
           ON CONFLICT (connection_id, stream, record_key) {UPDATE}
           RETURNING (xmax = 0) AS inserted)
         SELECT COUNT(*) FILTER (WHERE inserted) AS new FROM written"
    )
}

/// `items` as the text of a PostgreSQL `text[]`: every element quoted, with
/// `"` and `\` escaped, so any text (commas, braces, blanks, the word
/// `NULL`) comes back as itself.
fn text_array<T>(rows: &[T], field: impl Fn(&T) -> &str) -> String {
    let size: usize = rows.iter().map(|r| field(r).len() + 3).sum();
    let mut out = String::with_capacity(size + 2);
    out.push('{');
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        let mut rest = field(row);
        while let Some(at) = rest.find(['"', '\\']) {
            out.push_str(&rest[..at]);
            out.push('\\');
            out.push_str(&rest[at..=at]);
            rest = &rest[at + 1..];
        }
        out.push_str(rest);
        out.push('"');
    }
    out.push('}');
    out
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

/// Per event: run, seq, at, kind, data.
fn events_sql(style: Style, n: usize) -> String {
    format!(
        "INSERT INTO run_events (run_id, seq, at, kind, data) VALUES {}",
        style.tuples(0, n, 5)
    )
}

static UPSERT: Cache = [OnceLock::new(), OnceLock::new()];
static PG_UPSERT: OnceLock<String> = OnceLock::new();
static PG_INSERT: OnceLock<String> = OnceLock::new();
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
    key: Cow<'a, str>,
    data: String,
    emitted_at: &'a str,
    time: &'a str,
}

/// A batch's records reduced to the last operation per key, with the text
/// each row stores: the work that needs no database, done before the
/// batch's turn to be written comes.
pub(crate) struct Rows<'a> {
    upserts: Vec<Upsert<'a>>,
    deletes: BTreeMap<&'a str, Vec<Cow<'a, str>>>,
    /// Records that were upserts (deletes not counted), duplicates included.
    accepted: u64,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(records: &'a [p::Record], time_fields: &BTreeMap<String, String>) -> Rows<'a> {
        // A single key is its own text, borrowed; a composite one is its JSON.
        let keys: Vec<Cow<str>> = records
            .iter()
            .map(|r| match &r.key {
                Value::String(k) => Cow::Borrowed(k.as_str()),
                other => Cow::Owned(key_text(other)),
            })
            .collect();
        // Which record is the last of its key in the batch.
        let last = {
            let mut at: HashMap<(&str, &str), usize> = HashMap::with_capacity(records.len());
            for (i, (r, k)) in records.iter().zip(&keys).enumerate() {
                at.insert((r.stream.as_str(), k.as_ref()), i);
            }
            let mut last = vec![false; records.len()];
            for i in at.into_values() {
                last[i] = true;
            }
            last
        };
        let mut upserts: Vec<Upsert> = Vec::with_capacity(records.len());
        let mut deletes: BTreeMap<&str, Vec<Cow<str>>> = BTreeMap::new();
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
        // One stream at a time: the stream is bound once per statement. Keys
        // are distinct (one row per key), so their order does not matter.
        upserts.sort_by(|a, b| a.stream.cmp(b.stream));
        Rows {
            upserts,
            deletes,
            accepted,
        }
    }
}

/// Write a batch's rows; returns how many were upserts and how each
/// stream's record count changed: a delete counts the rows it removed, an
/// upsert counts when its key was not in the table before (looked up in
/// the batch's transaction, just before the write).
pub(super) async fn write_records(
    tx: &mut Tx,
    connection_id: &str,
    run_id: &str,
    now: i64,
    rows: &Rows<'_>,
) -> Result<Written> {
    let style = Style::of(tx);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (stream, keys) in &rows.deletes {
        for chunk in chunks(keys) {
            let mut q = sqlx::query(statement(&DELETE, delete_sql, style, chunk.len()))
                .bind(connection_id)
                .bind(*stream);
            for k in chunk {
                q = q.bind(&**k);
            }
            let removed = q.execute(&mut **tx).await?.rows_affected() as i64;
            *counts.entry((*stream).to_owned()).or_default() -= removed;
        }
    }
    let mut rest = rows.upserts.as_slice();
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|u| u.stream == first.stream).count();
        let (group, tail) = rest.split_at(same);
        rest = tail;
        let new = match style {
            Style::Anonymous => upsert_counting_new(tx, connection_id, run_id, now, group).await?,
            Style::Numbered => upsert_pg(tx, connection_id, run_id, now, group).await?,
        };
        *counts.entry(first.stream.to_owned()).or_default() += new;
    }
    counts.retain(|_, n| *n != 0);
    Ok(Written {
        accepted: rows.accepted,
        counts,
    })
}

/// SQLite: the upserts of one stream. Each chunk is first inserted where
/// its keys are new (the rows it changed are the stream's new records), and
/// only when some key was there already is the chunk written again as an
/// upsert. A first sync, all new keys, costs one statement per chunk;
/// SQLite cannot tell an upsert's inserts from its updates. Returns the
/// number of new records.
async fn upsert_counting_new(
    tx: &mut Tx,
    connection_id: &str,
    run_id: &str,
    now: i64,
    group: &[Upsert<'_>],
) -> Result<i64> {
    let style = Style::Anonymous;
    let mut new_rows = 0;
    for chunk in chunks(group) {
        let bind = |sql: &'static str| {
            let mut q = sqlx::query(sql)
                .bind(connection_id)
                .bind(chunk[0].stream)
                .bind(run_id)
                .bind(now);
            for u in chunk {
                q = q.bind(&*u.key).bind(u.data.as_str()).bind(u.emitted_at).bind(u.time);
            }
            q
        };
        let new = bind(statement(&INSERT_NEW, insert_new_sql, style, chunk.len()))
            .execute(&mut **tx)
            .await?
            .rows_affected();
        new_rows += new as i64;
        if (new as usize) < chunk.len() {
            bind(statement(&UPSERT, upsert_sql, style, chunk.len()))
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(new_rows)
}

/// PostgreSQL: the upserts of one stream, [`PG_CHUNK`] rows a statement;
/// returns the number of new records.
///
/// Each chunk is first tried as a plain insert inside a savepoint: when
/// every key is new (a first sync, an append-only stream) that is all, and
/// the server skips the upsert's lookup of each key before inserting it
/// (about a third of the statement's time). When a key is there already
/// the insert fails as a unique violation, the savepoint undoes it, and the
/// chunk is written as an upsert that counts its new rows. Either way the
/// rows written are the upsert's; only a chunk mixing new and stored keys
/// pays for the attempt.
async fn upsert_pg(tx: &mut Tx, connection_id: &str, run_id: &str, now: i64, group: &[Upsert<'_>]) -> Result<i64> {
    let insert = PG_INSERT.get_or_init(pg_insert_sql).as_str();
    let upsert = PG_UPSERT.get_or_init(pg_upsert_sql).as_str();
    let mut new_rows = 0;
    for chunk in group.chunks(PG_CHUNK) {
        let arrays = [
            text_array(chunk, |u| &*u.key),
            text_array(chunk, |u| &*u.data),
            text_array(chunk, |u| u.emitted_at),
            text_array(chunk, |u| u.time),
        ];
        let bind = |sql: &'static str| {
            let q = sqlx::query(sql)
                .bind(connection_id)
                .bind(chunk[0].stream)
                .bind(run_id)
                .bind(now);
            arrays.iter().fold(q, |q, a| q.bind(a.as_str()))
        };
        let mut attempt = tx.begin().await?;
        match bind(insert).execute(&mut *attempt).await {
            Ok(done) => {
                attempt.commit().await?;
                new_rows += done.rows_affected() as i64;
            }
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                attempt.rollback().await?;
                let row = bind(upsert).fetch_one(&mut **tx).await?;
                new_rows += row.try_get::<i64, _>("new")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(new_rows)
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
        assert!(upsert_sql(Style::Anonymous, 2).contains(
            "SELECT ?, ?, column1, column2, column3, ?, ?, column4 FROM (VALUES (?,?,?,?),(?,?,?,?)) WHERE true"
        ));
        assert_eq!(
            statement(&UPSERT, upsert_sql, Style::Anonymous, 4),
            upsert_sql(Style::Anonymous, 4)
        );
    }

    #[test]
    fn text_arrays_quote_every_element_and_escape_quotes_and_backslashes() {
        let rows = ["plain", "", "NULL", r#"{"a":"b,c"}"#, r"back\slash", "  { } "];
        assert_eq!(
            text_array(&rows, |r| r),
            r#"{"plain","","NULL","{\"a\":\"b,c\"}","back\\slash","  { } "}"#
        );
        assert_eq!(text_array(&["a\nb"], |r| r), "{\"a\nb\"}", "a newline stays as it is");
    }
}
