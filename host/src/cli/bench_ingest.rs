//! `pdpp-host bench --ingest`: how fast records become durable, against the
//! database's own speed on the same rows.
//!
//! On a fresh SQLite file (and on a fresh PostgreSQL database when
//! `--postgres-url` is given), each repetition measures:
//!
//! - the raw baseline: the rows the demo connector emits, inserted
//!   in-process into a table of the records table's shape (same columns,
//!   primary key and time index) inside one transaction. On SQLite with one
//!   prepared INSERT stepped per row through the C API, with the store's
//!   pragmas (WAL, `synchronous = FULL`); on PostgreSQL with multi-row
//!   INSERTs of 1,000 rows.
//! - ours: a run of the demo connector through a stored connection
//!   (`run_connection`, the path `run` and `serve` take): guest → host →
//!   rules, redaction, batches committed as the guest sends them.
//!
//! It prints records/s for each (median over the repetitions) and their
//! ratio. Nothing here is asserted: it is a measurement.

use anyhow::{Context, bail, ensure};
use pdpp_host::deploy::{DeployOptions, Deployment};
use pdpp_host::manifest::Manifest;
use pdpp_host::plugins::LoadOptions;
use pdpp_host::runtime::{ConnectionRun, run_connection};
use pdpp_host::sandbox::{Plugin, Sandbox};
use pdpp_host::store::{BrowserSessionMode, ConnectionStatus, NewConnection, Trigger, new_id};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2026-01-01T00:00:00Z, the demo's first contact time.
const BASE: i64 = 1_767_225_600;

/// What `bench --ingest` needs from the bench's arguments.
pub struct IngestArgs<'a> {
    pub plugin: &'a Path,
    pub manifest: &'a Path,
    pub records: u64,
    pub runs: usize,
    pub postgres_url: Option<&'a str>,
}

impl<'a> From<&'a super::bench::BenchArgs> for IngestArgs<'a> {
    fn from(a: &'a super::bench::BenchArgs) -> Self {
        IngestArgs {
            plugin: &a.plugin,
            manifest: &a.manifest,
            records: a.records,
            runs: a.runs,
            postgres_url: a.postgres_url.as_deref(),
        }
    }
}

/// One row as the demo connector's contact `i` is stored.
struct Row {
    key: String,
    data: String,
    time: String,
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let key = format!("c{i:05}");
            let time = rfc3339(BASE + i as i64 * 3_600);
            let data = json!({
                "email": format!("person{i}@example.test"),
                "id": key,
                "name": format!("Person {i}"),
                "updated_at": time,
            })
            .to_string();
            Row { key, data, time }
        })
        .collect()
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn per_second(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);
impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(new_id("pdpp-bench-ingest"));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn run(args: IngestArgs<'_>) -> anyhow::Result<()> {
    let reps = args.runs.clamp(1, 5);
    let sandbox = Sandbox::new()?;
    let opts = LoadOptions {
        manifest_file: Some(args.manifest.to_path_buf()),
        ..Default::default()
    };
    let loaded = pdpp_host::plugins::load_file(&sandbox, args.plugin, &opts)
        .with_context(|| format!("cannot load plugin {}", args.plugin.display()))?;
    let rows = Arc::new(rows(args.records));
    println!(
        "machine: {} cores; records per run: {}; repetitions: {reps} (medians)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.records
    );

    let (mut raw, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let dir = TempDir::new()?;
        let db = dir.0.join("raw.db");
        let t = tokio::task::spawn_blocking({
            let rows = rows.clone();
            move || sqlite_raw(&db, &rows)
        })
        .await??;
        raw.push(per_second(args.records, t));
        let url = format!("sqlite://{}?mode=rwc", dir.0.join("pdpp.db").display());
        let t = ours_run(&sandbox, &loaded.plugin, &loaded.manifest, &dir.0, url, args.records).await?;
        ours.push(per_second(args.records, t));
    }
    report("SQLite", "prepared INSERT per row, one transaction", raw, ours);

    if let Some(base) = args.postgres_url {
        let (mut raw, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let dir = TempDir::new()?;
            let url = fresh_postgres(base).await?;
            let result = async {
                let t = postgres_raw(&url, &rows).await?;
                raw.push(per_second(args.records, t));
                let t = ours_run(
                    &sandbox,
                    &loaded.plugin,
                    &loaded.manifest,
                    &dir.0,
                    url.clone(),
                    args.records,
                )
                .await?;
                ours.push(per_second(args.records, t));
                anyhow::Ok(())
            }
            .await;
            drop_postgres(base, &url).await?;
            result?;
        }
        report(
            "PostgreSQL",
            "multi-row INSERT of 1,000 rows, one transaction",
            raw,
            ours,
        );
    }
    Ok(())
}

fn report(db: &str, baseline: &str, raw: Vec<f64>, ours: Vec<f64>) {
    let (raw, ours) = (median(raw), median(ours));
    println!("{db}");
    println!("  raw ({baseline})  {raw:>10.0} records/s");
    println!("  ours (demo run through the host, durable)  {ours:>10.0} records/s");
    println!("  ratio ours / raw  {:>5.1}%", ours / raw * 100.0);
}

/// A demo run of `records` contacts through a new stored connection of a
/// deployment on `url`; the time the run took.
async fn ours_run(
    sandbox: &Sandbox,
    plugin: &Plugin,
    manifest: &Arc<Manifest>,
    data_dir: &Path,
    url: String,
    records: u64,
) -> anyhow::Result<Duration> {
    let dep = Deployment::open(DeployOptions {
        data_dir: data_dir.to_path_buf(),
        database_url: Some(url),
        key_file: None,
    })
    .await?;
    dep.store.upsert_connector(manifest, None).await?;
    let c = dep
        .store
        .create_connection(NewConnection {
            connection_id: None,
            connector_id: manifest.connector_id.clone(),
            status: ConnectionStatus::Active,
            display_name: None,
            binding_metadata: json!({ "contacts": records, "events": 0 }),
            browser_session: BrowserSessionMode::default(),
        })
        .await?;
    let t = Instant::now();
    let out = run_connection(
        &dep,
        sandbox,
        plugin,
        manifest.clone(),
        &c.connection_id,
        ConnectionRun::new(Trigger::Manual),
    )
    .await
    .map_err(|e| anyhow::anyhow!("the run was refused: {e}"))?;
    let took = t.elapsed();
    if !out.succeeded() {
        bail!("the demo run failed: {:?} {:?}", out.reason, out.message);
    }
    let stored = dep.store.count_records(&c.connection_id).await?;
    ensure!(stored == records as i64, "{stored} records stored, expected {records}");
    dep.store.close().await;
    Ok(took)
}

/// The records table's shape, for the baselines.
const RAW_TABLE: &str = "CREATE TABLE raw_records (
    connection_id TEXT NOT NULL, stream TEXT NOT NULL, record_key TEXT NOT NULL, data TEXT NOT NULL,
    emitted_at TEXT NOT NULL, run_id TEXT NOT NULL, written_at BIGINT NOT NULL, record_time TEXT,
    PRIMARY KEY (connection_id, stream, record_key))";
const RAW_INDEX: &str = "CREATE INDEX raw_by_time ON raw_records (connection_id, stream, record_time)";

/// The SQLite baseline through the C API: one prepared INSERT, stepped per
/// row, in one transaction, with the store's pragmas.
fn sqlite_raw(path: &Path, rows: &[Row]) -> anyhow::Result<Duration> {
    use libsqlite3_sys as ffi;
    use std::ffi::CString;
    use std::ptr;

    struct Db(*mut ffi::sqlite3);
    impl Drop for Db {
        fn drop(&mut self) {
            // SAFETY: the handle came from sqlite3_open_v2 and is closed once.
            unsafe { ffi::sqlite3_close(self.0) };
        }
    }
    fn check(db: &Db, rc: i32, what: &str) -> anyhow::Result<()> {
        if rc == ffi::SQLITE_OK || rc == ffi::SQLITE_DONE || rc == ffi::SQLITE_ROW {
            return Ok(());
        }
        // SAFETY: the handle is open; sqlite3_errmsg returns a NUL-terminated string it owns.
        let msg = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db.0)) };
        bail!("sqlite {what}: {}", msg.to_string_lossy())
    }
    fn exec(db: &Db, sql: &str) -> anyhow::Result<()> {
        let sql = CString::new(sql)?;
        // SAFETY: an open handle and a NUL-terminated statement.
        let rc = unsafe { ffi::sqlite3_exec(db.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
        check(db, rc, "exec")
    }

    let file = CString::new(path.to_string_lossy().as_bytes())?;
    let mut handle = ptr::null_mut();
    // SAFETY: a NUL-terminated path and an out-pointer for the handle.
    let rc = unsafe {
        ffi::sqlite3_open_v2(
            file.as_ptr(),
            &mut handle,
            ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
            ptr::null(),
        )
    };
    let db = Db(handle);
    check(&db, rc, "open")?;
    for sql in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        RAW_TABLE,
        RAW_INDEX,
    ] {
        exec(&db, sql)?;
    }
    let insert = CString::new(
        "INSERT INTO raw_records (connection_id, stream, record_key, data, emitted_at, run_id, written_at, record_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let t = Instant::now();
    let mut stmt = ptr::null_mut();
    // SAFETY: an open handle, a NUL-terminated statement, an out-pointer.
    check(
        &db,
        unsafe { ffi::sqlite3_prepare_v2(db.0, insert.as_ptr(), -1, &mut stmt, ptr::null_mut()) },
        "prepare",
    )?;
    exec(&db, "BEGIN IMMEDIATE")?;
    let now = pdpp_host::store::now_ms();
    let emitted_at = rfc3339(BASE);
    let text = |i: i32, s: &str| {
        // SAFETY: `stmt` is prepared; SQLITE_TRANSIENT makes SQLite copy the bytes.
        unsafe { ffi::sqlite3_bind_text(stmt, i, s.as_ptr().cast(), s.len() as i32, ffi::SQLITE_TRANSIENT()) }
    };
    for r in rows {
        for (i, s) in [
            (1, "con_bench"),
            (2, "contacts"),
            (3, r.key.as_str()),
            (4, r.data.as_str()),
            (5, emitted_at.as_str()),
            (6, "run_bench"),
            (8, r.time.as_str()),
        ] {
            check(&db, text(i, s), "bind")?;
        }
        // SAFETY: `stmt` is prepared.
        check(&db, unsafe { ffi::sqlite3_bind_int64(stmt, 7, now) }, "bind")?;
        // SAFETY: `stmt` is prepared and bound.
        check(&db, unsafe { ffi::sqlite3_step(stmt) }, "step")?;
        // SAFETY: `stmt` is prepared.
        unsafe { ffi::sqlite3_reset(stmt) };
    }
    exec(&db, "COMMIT")?;
    let took = t.elapsed();
    // SAFETY: finalized once, before the handle closes.
    unsafe { ffi::sqlite3_finalize(stmt) };
    Ok(took)
}

/// The PostgreSQL baseline: multi-row INSERTs of 1,000 rows in one
/// transaction, on the native driver.
async fn postgres_raw(url: &str, rows: &[Row]) -> anyhow::Result<Duration> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::query(RAW_TABLE).execute(&mut conn).await?;
    sqlx::query(RAW_INDEX).execute(&mut conn).await?;
    let now = pdpp_host::store::now_ms();
    let emitted_at = rfc3339(BASE);
    let t = Instant::now();
    let mut tx = conn.begin().await?;
    for chunk in rows.chunks(1_000) {
        let mut sql = String::from(
            "INSERT INTO raw_records (connection_id, stream, record_key, data, emitted_at, run_id, written_at, record_time) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 8;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind("con_bench")
                .bind("contacts")
                .bind(&r.key)
                .bind(&r.data)
                .bind(&emitted_at)
                .bind("run_bench")
                .bind(now)
                .bind(&r.time);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let took = t.elapsed();
    conn.close().await?;
    Ok(took)
}

/// A new database on the server `base` points at; its URL.
async fn fresh_postgres(base: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(base)
        .await
        .context("cannot connect to --postgres-url")?;
    let name = new_id("pdpp_bench");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let (prefix, _) = base
        .rsplit_once('/')
        .context("--postgres-url names no database (postgres://user@host:port/db)")?;
    Ok(format!("{prefix}/{name}"))
}

async fn drop_postgres(base: &str, url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let name = url.rsplit_once('/').map(|(_, n)| n).unwrap_or_default();
    let mut admin = sqlx::PgConnection::connect(base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_the_demo_times() {
        assert_eq!(rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_600 + 29 * 3_600), "2026-01-02T05:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
