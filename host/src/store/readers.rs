//! Connections that only read, for the owner's views on SQLite.
//!
//! sqlx runs each SQLite connection on a worker thread of its own: a query
//! is a message to that thread and its rows are messages back. A query made
//! on the pool pays that round trip twice, because a connection returned to
//! sqlx's pool is pinged through its worker before it is idle again. Under
//! load on a small machine those thread hand-offs, not SQLite, were most of
//! a setup-status request's time (`docs/benchmarks.md`).
//!
//! The views therefore read through a few connections kept here: taken and
//! given back without a message to any thread, opened lazily, at most
//! [`READERS`] of them, each `query_only` so nothing read through one can
//! write. A file this process opened cannot go stale, and a dropped read
//! leaves nothing behind: every query has its own row channel, and the
//! worker stops producing once its receiver is gone. PostgreSQL reads stay
//! on the pool, whose check on release a network connection needs.

use super::Result;
use sqlx::{AnyConnection, Connection};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use tokio::sync::{Semaphore, SemaphorePermit};

/// At most this many read connections (and worker threads) on SQLite.
pub(super) const READERS: usize = 4;

#[derive(Debug)]
pub(super) struct Readers {
    url: String,
    idle: Mutex<Vec<AnyConnection>>,
    slots: Semaphore,
}

impl Readers {
    pub(super) fn new(url: &str) -> Self {
        Readers {
            url: url.to_owned(),
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(READERS),
        }
    }

    fn take_idle(&self) -> Option<AnyConnection> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    /// Close the idle connections (their worker threads end).
    pub(super) async fn close(&self) {
        while let Some(conn) = self.take_idle() {
            let _ = conn.close().await;
        }
    }

    async fn open(&self) -> Result<AnyConnection> {
        let mut conn = AnyConnection::connect(&self.url).await?;
        for pragma in ["PRAGMA query_only = ON", "PRAGMA busy_timeout = 5000"] {
            sqlx::query(pragma).execute(&mut conn).await?;
        }
        Ok(conn)
    }
}

/// A connection to read through, given back when dropped.
pub(crate) struct Read<'a>(Inner<'a>);

enum Inner<'a> {
    Pooled(sqlx::pool::PoolConnection<sqlx::Any>),
    Reader {
        conn: Option<AnyConnection>,
        home: &'a Readers,
        _slot: SemaphorePermit<'a>,
    },
}

impl super::Store {
    /// A connection for a read (see the module documentation).
    pub(crate) async fn read(&self) -> Result<Read<'_>> {
        match self.readers.as_deref() {
            Some(home) => {
                let slot = home.slots.acquire().await.expect("the reader slots are never closed");
                let conn = match home.take_idle() {
                    Some(conn) => conn,
                    None => home.open().await?,
                };
                Ok(Read(Inner::Reader {
                    conn: Some(conn),
                    home,
                    _slot: slot,
                }))
            }
            None => Ok(Read(Inner::Pooled(self.pool.acquire().await?))),
        }
    }
}

impl Deref for Read<'_> {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match &self.0 {
            Inner::Pooled(c) => c,
            Inner::Reader { conn, .. } => conn.as_ref().expect("present until dropped"),
        }
    }
}

impl DerefMut for Read<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.0 {
            Inner::Pooled(c) => c,
            Inner::Reader { conn, .. } => conn.as_mut().expect("present until dropped"),
        }
    }
}

impl Drop for Read<'_> {
    fn drop(&mut self) {
        if let Inner::Reader { conn, home, .. } = &mut self.0
            && let Some(conn) = conn.take()
        {
            // Idle before the slot is released (fields drop after this).
            home.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use sqlx::Row;
    use std::time::Duration;

    async fn store() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "pdpp-readers-{}-{}",
            std::process::id(),
            super::super::new_id("t")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open_sqlite(&dir.join("pdpp.sqlite")).await.unwrap(), dir)
    }

    #[tokio::test]
    async fn a_reader_cannot_write() {
        let (s, dir) = store().await;
        let err = sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *s.read().await.unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_read_dropped_mid_query_leaves_its_connection_right_for_the_next() {
        let (s, dir) = store().await;
        // A query of many rows, dropped after a few of them or none, on
        // every reader in turn; each next read gets its own whole answer.
        let many = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT i FROM n";
        for round in 0..40u64 {
            let mut read = s.read().await.unwrap();
            let cut = Duration::from_micros(round * 37 % 400);
            let _ = tokio::time::timeout(cut, sqlx::query(many).fetch_all(&mut *read)).await;
            drop(read);
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 777) SELECT i FROM n)")
                .fetch_one(&mut *s.read().await.unwrap())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
            assert_eq!(n, 777, "round {round}");
        }
        s.close().await;
        std::fs::remove_dir_all(dir).unwrap();
    }
}
