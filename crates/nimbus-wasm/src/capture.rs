//! Guest stdout/stderr, captured per invocation into one bounded buffer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use nimbus_core::CapturedOutput;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Shared by the guest's stdout and stderr, so their lines interleave in the
/// order written. Writes past the bound are counted and dropped, never refused:
/// a chatty guest must not crash because its logs are full.
#[derive(Clone)]
pub struct OutputCapture {
    inner: Arc<Mutex<Buffer>>,
}

struct Buffer {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl OutputCapture {
    pub fn new(limit: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Buffer { bytes: Vec::new(), limit, dropped: 0 })) }
    }

    fn append(&self, data: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = buf.limit.saturating_sub(buf.bytes.len());
        let take = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..take]);
        buf.dropped += (data.len() - take) as u64;
    }

    pub fn take(&self) -> CapturedOutput {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = std::mem::take(&mut buf.bytes);
        CapturedOutput { text: String::from_utf8_lossy(&bytes).into_owned(), truncated_bytes: buf.dropped }
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for OutputCapture {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_limit_and_counts_the_rest() {
        let c = OutputCapture::new(5);
        c.append(b"abc");
        c.append(b"defgh");
        let out = c.take();
        assert_eq!(out.text, "abcde");
        assert_eq!(out.truncated_bytes, 3);
        assert!(out.display().contains("[nimbus: output truncated, 3 bytes dropped]"));
    }
}
