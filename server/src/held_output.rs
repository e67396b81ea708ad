//! Holding a connection's output until the client waits for it, as
//! Postgres' backend does: a pipelined Bind/Execute/Sync is answered with
//! one write instead of one per message.
//!
//! pgwire flushes its sink after nearly every message (BindComplete, the
//! rows' CommandComplete, ReadyForQuery), so a prepared `SELECT 1` cost four
//! `sendto` calls and four wake-ups of the client: on loopback that was
//! most of the server's CPU. This transport keeps what is written until
//! - the connection needs the client's next bytes (nothing then stays
//!   held while the client waits for an answer), or
//! - [`HELD_BYTES`] are waiting (a large result still streams), or
//! - holding is switched off ([`OutputHold::release`]): a `COPY … TO
//!   STDOUT` of a subscription streams rows that must not wait.
//!
//! tokio's `BufWriter` cannot do this: its flush always writes through.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use pgwire::api::ClientInfo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Held bytes past which a flush writes them anyway.
const HELD_BYTES: usize = 64 * 1024;

/// Whether a connection's output is held; shared by its transport, its
/// message loop and the handlers (through the session extensions).
#[derive(Debug)]
pub(crate) struct OutputHold(AtomicBool);

impl Default for OutputHold {
    fn default() -> Self {
        Self(AtomicBool::new(true))
    }
}

impl OutputHold {
    /// Holds output again: a new message is being answered.
    pub(crate) fn hold(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Writes output through at each flush until the next [`Self::hold`]:
    /// for responses that stream without end.
    pub(crate) fn release(&self) {
        self.0.store(false, Ordering::Release);
    }

    fn holding(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Writes `client`'s output through from here to the end of the current
/// message's answer: for `COPY … TO STDOUT`, whose rows may come without end.
pub(crate) fn stream_output<C: ClientInfo>(client: &C) {
    if let Some(hold) = client.session_extensions().get::<OutputHold>() {
        hold.release();
    }
}

/// A transport whose flushes are held (see the module documentation).
#[derive(Debug)]
pub(crate) struct HeldOutput<S> {
    inner: S,
    /// Bytes written and not yet passed on; `held[sent..]` remain.
    held: Vec<u8>,
    sent: usize,
    hold: Arc<OutputHold>,
}

impl<S> HeldOutput<S> {
    /// `inner` with its output held while `hold` says so.
    pub(crate) fn new(inner: S, hold: Arc<OutputHold>) -> Self {
        Self {
            inner,
            held: Vec::new(),
            sent: 0,
            hold,
        }
    }
}

impl<S: AsyncWrite + Unpin> HeldOutput<S> {
    /// Passes every held byte on to the inner transport.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.held.len() {
            let written =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.sent..]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += written;
        }
        self.held.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    fn poll_write_through(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_write_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeldOutput<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The connection waits for the client: it must have every answer.
        if !this.held.is_empty() {
            ready!(this.poll_write_through(cx))?;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeldOutput<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() >= HELD_BYTES {
            ready!(this.poll_write_held(cx))?;
        }
        this.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold.holding() && this.held.len() < HELD_BYTES {
            return Poll::Ready(Ok(()));
        }
        this.poll_write_through(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_through(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn held_output_is_written_once_the_connection_reads() {
        let (server, mut client) = tokio::io::duplex(1 << 20);
        let mut held = HeldOutput::new(server, Arc::default());
        held.write_all(b"one").await.unwrap();
        held.flush().await.unwrap();
        held.write_all(b"two").await.unwrap();
        held.flush().await.unwrap();
        // Nothing has reached the client yet (a duplex hands over written
        // bytes at once).
        let mut buf = [0u8; 6];
        let early = client.read(&mut buf).now_or_never();
        assert!(early.is_none(), "held output reached the client: {early:?}");

        // The server reads: everything held goes first, in one piece.
        client.write_all(b"?").await.unwrap();
        let mut question = [0u8; 1];
        held.read_exact(&mut question).await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"onetwo");
    }

    #[tokio::test]
    async fn released_or_large_output_is_written_at_each_flush() {
        let (server, mut client) = tokio::io::duplex(1 << 20);
        let hold = Arc::new(OutputHold::default());
        let mut held = HeldOutput::new(server, Arc::clone(&hold));
        let large = vec![7u8; HELD_BYTES];
        held.write_all(&large).await.unwrap();
        held.flush().await.unwrap();
        let mut buf = vec![0u8; HELD_BYTES];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, large);

        hold.release();
        held.write_all(b"row").await.unwrap();
        held.flush().await.unwrap();
        let mut row = [0u8; 3];
        client.read_exact(&mut row).await.unwrap();
        assert_eq!(&row, b"row");
    }
}
