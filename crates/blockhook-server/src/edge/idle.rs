//! A connection on which no byte moves, either way, for `idle_timeout` is closed: it catches
//! what the per-request timeouts cannot, such as a client that never reads its response or a
//! peer that vanished without a FIN. Before the first byte arrives the limit is shorter (the
//! header timeout): hyper's own header timer only starts once the HTTP version is known, which
//! takes a first byte, so a client that connects and stays silent would otherwise hold its
//! connection for the whole idle limit.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `io`, failing with `TimedOut` once it has been idle for the limit.
///
/// Progress only records the time: the timer is moved forward when it fires early, not on
/// every read and write, so the hot path never touches the timer wheel.
#[derive(Debug)]
pub struct IdleTimeout<IO> {
    io: IO,
    limit: Duration,
    /// When a byte last moved; `None` until the first one.
    last_progress: Option<Instant>,
    deadline: Pin<Box<Sleep>>,
}

impl<IO> IdleTimeout<IO> {
    /// Wraps `io`: the first byte must arrive within `first_byte`, then nothing may stall for
    /// `limit`.
    pub fn new(io: IO, first_byte: Duration, limit: Duration) -> Self {
        Self {
            io,
            limit,
            last_progress: None,
            deadline: Box::pin(tokio::time::sleep(first_byte.min(limit))),
        }
    }

    /// Something moved: the limit counts from now.
    fn progressed(&mut self) {
        self.last_progress = Some(Instant::now());
    }

    /// The outcome of a write: bytes written reset the clock; a write that waits may time out.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progressed();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    /// Nothing moved: an error once the limit has passed since the last progress (and a
    /// wake-up registered for it).
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            match self.last_progress.map(|at| at + self.limit) {
                // Something moved since the timer was set: wait out the rest.
                Some(due) if due > self.deadline.deadline() => self.deadline.as_mut().reset(due),
                _ => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle past server.idle_timeout",
                    ));
                }
            }
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progressed();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        this.wrote(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_limit_fails_and_traffic_resets_it() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = IdleTimeout::new(a, Duration::from_secs(1), Duration::from_secs(10));
        // The first byte may come late only up to its own, shorter limit.
        let (c, _d) = tokio::io::duplex(64);
        let mut silent = IdleTimeout::new(c, Duration::from_secs(1), Duration::from_secs(10));
        let err = silent.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        b.write_all(b"x").await.unwrap();
        assert_eq!(a.read(&mut [0u8; 1]).await.unwrap(), 1);
        let mut buf = [0u8; 8];
        // Traffic within the limit keeps it open.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(7)).await;
            b.write_all(b"x").await.unwrap();
            assert_eq!(a.read(&mut buf).await.unwrap(), 1);
        }
        // Then silence: the read fails at the limit.
        let err = a.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
