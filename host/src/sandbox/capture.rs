//! Bounded capture of a guest's stdout and stderr.
//!
//! A connector's standard streams are diagnostics, not protocol. The host
//! keeps the last `capacity` bytes of each (a tail, like a ring buffer) and
//! counts everything the guest wrote, so a chatty guest can neither grow the
//! host's memory nor make its own writes fail.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Default)]
struct Buffer {
    tail: Vec<u8>,
    observed: u64,
}

/// A bounded tail of one output stream. Cloning shares the buffer.
#[derive(Clone)]
pub struct Capture {
    capacity: usize,
    buf: Arc<Mutex<Buffer>>,
}

/// What a capture holds at the end of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapturedText {
    /// The last bytes written, lossily decoded.
    pub tail: String,
    /// Bytes the guest wrote in all.
    pub bytes_observed: u64,
    /// Whether older output was dropped.
    pub truncated: bool,
}

impl Capture {
    pub fn new(capacity: usize) -> Self {
        Capture {
            capacity,
            buf: Arc::default(),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut b = self.buf.lock().expect("capture lock");
        b.observed += bytes.len() as u64;
        let keep = bytes.len().min(self.capacity);
        b.tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        if b.tail.len() > self.capacity {
            let excess = b.tail.len() - self.capacity;
            b.tail.drain(..excess);
        }
    }

    pub fn snapshot(&self) -> CapturedText {
        let b = self.buf.lock().expect("capture lock");
        CapturedText {
            tail: String::from_utf8_lossy(&b.tail).into_owned(),
            bytes_observed: b.observed,
            truncated: b.observed > b.tail.len() as u64,
        }
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::Capture;

    #[test]
    fn keeps_only_the_tail_and_counts_everything() {
        let c = Capture::new(8);
        c.push(b"hello ");
        c.push(b"wonderful world");
        let s = c.snapshot();
        assert_eq!(s.tail, "ul world");
        assert_eq!(s.bytes_observed, 21);
        assert!(s.truncated);
    }
}
