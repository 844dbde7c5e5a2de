//! Time limits on one connection, enforced on its bytes:
//! - **headers**: from the first byte of a request to the call of the handler (its headers
//!   parsed), at most `header_read_timeout`; a slow-header client is cut. The clock starts at a
//!   request's first byte, not when the connection became ready for one, so an idle HTTP/1.1
//!   keep-alive connection is not cut by it (hyper's own header timer starts while it waits for
//!   the next request, which made every keep-alive connection close after 10 s);
//! - **idle**: no byte moving either way for `idle_timeout` closes the connection: it catches
//!   what the per-request limits cannot, such as a client that never reads its response or a
//!   peer that vanished without a FIN. Before the first byte the limit is the header timeout,
//!   so a client that connects and stays silent cannot hold a connection for the idle limit.
//!
//! The connection's service reports each request it is handed ([`Requests`]): a request's
//! first bytes start the header clock only while no request is being handled (bytes then are a
//! body, or a pipelined request that is timed when its own bytes arrive), and a handler called
//! since the clock started stops it. HTTP/2 multiplexes requests and keeps an idle connection
//! alive with pings, so once a connection is known to be HTTP/2 only the idle limit applies
//! (its stream count and header list are capped by hyper).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the connection's service tells its IO about requests.
#[derive(Debug, Default)]
pub struct Requests {
    /// Requests handed to the service so far.
    started: AtomicU64,
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// The connection speaks HTTP/2.
    http2: AtomicBool,
}

impl Requests {
    /// A request's headers were parsed and its handler is called; the guard marks it done.
    pub fn begin(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request being handled; dropped when its response is ready (or the request is abandoned).
#[derive(Debug)]
pub struct InFlight(Arc<Requests>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request whose headers are being read: when they are due, and how many requests had started
/// when its first byte came (a later count means its handler was called).
#[derive(Debug, Clone, Copy)]
struct Reading {
    due: Instant,
    started: u64,
}

/// `io` with the connection's time limits: reads and writes fail with `TimedOut` past them.
///
/// Progress only records the time: the timer is moved forward when it fires early, not on
/// every read and write, so the hot path touches the timer wheel once per request at most.
#[derive(Debug)]
pub struct Timed<IO> {
    io: IO,
    idle_limit: Duration,
    header_limit: Duration,
    requests: Arc<Requests>,
    /// When a byte last moved; `None` until the first one.
    last_progress: Option<Instant>,
    /// The request whose headers are being read, if any.
    reading: Option<Reading>,
    deadline: Pin<Box<Sleep>>,
}

impl<IO> Timed<IO> {
    /// Wraps `io`: the first byte must arrive within `header_limit`, each request's headers
    /// within `header_limit` of its first byte, and nothing may stall for `idle_limit`.
    pub fn new(
        io: IO,
        header_limit: Duration,
        idle_limit: Duration,
        requests: Arc<Requests>,
    ) -> Self {
        Self {
            io,
            idle_limit,
            header_limit,
            requests,
            last_progress: None,
            reading: None,
            deadline: Box::pin(tokio::time::sleep(header_limit.min(idle_limit))),
        }
    }

    /// Bytes arrived: the idle limit counts from now, and a request's first bytes start its
    /// header clock.
    fn received(&mut self) {
        let now = Instant::now();
        self.last_progress = Some(now);
        if self.reading_headers().is_some() || self.requests.http2.load(Ordering::Relaxed) {
            return;
        }
        if self.requests.in_flight.load(Ordering::Relaxed) == 0 {
            let due = now + self.header_limit;
            self.reading = Some(Reading {
                due,
                started: self.requests.started.load(Ordering::Relaxed),
            });
            if due < self.deadline.deadline() {
                self.deadline.as_mut().reset(due);
            }
        }
    }

    /// The headers being read and when they are due, unless their handler was called since.
    fn reading_headers(&mut self) -> Option<Instant> {
        let reading = self.reading?;
        if self.requests.started.load(Ordering::Relaxed) != reading.started
            || self.requests.http2.load(Ordering::Relaxed)
        {
            self.reading = None;
            return None;
        }
        Some(reading.due)
    }

    /// The outcome of a write: bytes written reset the idle clock; a write that waits may time
    /// out.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last_progress = Some(Instant::now());
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.check(cx).map(Err),
        }
    }

    /// Nothing moved: an error once a limit has passed (and a wake-up registered for the next).
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let headers = self.reading_headers();
            if headers.is_some_and(|due| due <= now) {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request headers not complete within server.header_read_timeout",
                ));
            }
            let Some(idle_due) = self.last_progress.map(|at| at + self.idle_limit) else {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within server.header_read_timeout of connecting",
                ));
            };
            if idle_due <= now {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle past server.idle_timeout",
                ));
            }
            // Something moved since the timer was set: wait for the nearer limit.
            let next = headers.map_or(idle_due, |due| due.min(idle_due));
            self.deadline.as_mut().reset(next);
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Timed<IO> {
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
                    this.received();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.check(cx).map(Err),
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
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

    const HEADERS: Duration = Duration::from_secs(1);
    const IDLE: Duration = Duration::from_secs(10);

    fn timed() -> (
        Timed<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Requests>,
    ) {
        let (a, b) = tokio::io::duplex(64);
        let requests = Arc::new(Requests::default());
        (Timed::new(a, HEADERS, IDLE, requests.clone()), b, requests)
    }

    /// The read's error, which must be a timeout: its message names the limit.
    async fn timed_out(io: &mut Timed<tokio::io::DuplexStream>) -> String {
        let err = io.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        err.to_string()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_at_the_header_limit() {
        let (mut io, _peer, _) = timed();
        assert!(timed_out(&mut io).await.contains("of connecting"));
    }

    #[tokio::test(start_paused = true)]
    async fn headers_trickling_past_the_limit_are_cut() {
        let (mut io, mut peer, _) = timed();
        let mut buf = [0u8; 8];
        // Bytes keep coming (so the idle limit is never reached), but no request is handed over.
        for _ in 0..3 {
            peer.write_all(b"x").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
            tokio::time::advance(HEADERS / 4).await;
        }
        assert!(timed_out(&mut io).await.contains("header_read_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_lasts_until_the_idle_limit() {
        let (mut io, mut peer, requests) = timed();
        let mut buf = [0u8; 8];
        for _ in 0..3 {
            peer.write_all(b"GET").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 3);
            // The headers are complete: the handler runs, then answers.
            drop(requests.begin(false));
            io.write_all(b"200").await.unwrap();
            // Idle for far longer than the header limit, less than the idle one.
            tokio::time::advance(HEADERS * 7).await;
        }
        // A request's first bytes after the idle pause get their own header limit.
        peer.write_all(b"GE").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 2);
        assert!(timed_out(&mut io).await.contains("header_read_timeout"));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_idle_limit_fails_and_traffic_resets_it() {
        let (mut io, mut peer, requests) = timed();
        let mut buf = [0u8; 8];
        peer.write_all(b"x").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        // HTTP/2: only the idle limit applies from now on.
        let _stream = requests.begin(true);
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(7)).await;
            peer.write_all(b"x").await.unwrap();
            assert_eq!(io.read(&mut buf).await.unwrap(), 1);
        }
        assert!(timed_out(&mut io).await.contains("idle_timeout"));
    }
}
