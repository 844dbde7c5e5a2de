//! Reading a request's body into memory, held to three bounds: its size
//! (`server.max_body_bytes`), a deadline for all of it (`server.body_read_timeout`), and a
//! minimum average rate (`server.body_min_rate` bytes per second once
//! `server.body_min_rate_grace` has passed, as Kestrel's `MinRequestBodyDataRate`).
//!
//! The deadline alone lets a client trickling its body hold a handler (and the connection) for
//! the whole timeout, which has to be long enough for the largest body on a slow link; the rate
//! cuts such a client after the grace period instead, while a large body arriving steadily
//! still gets the whole timeout. The rate is an average since the body's first poll, checked at
//! the end of the grace and every second after it, so a short stall on a healthy link does not
//! cut it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use tokio::time::Instant;

/// How often the average rate is checked once the grace period is over.
const RATE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The bounds on one body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `server.max_body_bytes`.
    pub max_bytes: usize,
    /// `server.body_read_timeout`: the whole body within this time.
    pub timeout: Duration,
    /// `server.body_min_rate`: bytes per second on average at least (0 = no minimum).
    pub min_rate: u64,
    /// `server.body_min_rate_grace`: the rate is not checked during the body's first seconds.
    pub grace: Duration,
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than `max_bytes`.
    TooLarge,
    /// Not complete within `timeout`.
    TimedOut,
    /// Slower than `min_rate` on average after the grace period.
    TooSlow,
    /// The connection failed or the body was malformed.
    Broken(String),
}

/// Reads `body` whole within `limits`.
pub async fn read(body: axum::body::Body, limits: BodyLimits) -> Result<Bytes, BodyError> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let first_check = (limits.min_rate > 0).then(|| started + limits.grace);
    let wake = first_check.map_or(deadline, |at| at.min(deadline));
    let timer = tokio::time::sleep_until(wake);
    tokio::pin!(timer);
    let mut body = http_body_util::Limited::new(body, limits.max_bytes);
    // Most bodies come in one frame: it is kept as it came, without a copy.
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut received: u64 = 0;
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            () = &mut timer => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(BodyError::TimedOut);
                }
                // Bytes so far against the minimum over the time so far, in whole numbers.
                let elapsed_ms = now.duration_since(started).as_millis();
                if u128::from(received) * 1000 < u128::from(limits.min_rate) * elapsed_ms {
                    return Err(BodyError::TooSlow);
                }
                timer.as_mut().reset((now + RATE_CHECK_INTERVAL).min(deadline));
                continue;
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge
            } else {
                BodyError::Broken(e.to_string())
            }
        })?;
        // Trailers carry nothing a handler reads.
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len() as u64;
        match first.take() {
            None if more.is_empty() => first = Some(data),
            None => more.extend_from_slice(&data),
            Some(f) => {
                more.extend_from_slice(&f);
                more.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| more.freeze()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(30),
        min_rate: 1024,
        grace: Duration::from_secs(5),
    };

    /// A body whose chunks `send` produces: `(delay before it, bytes)`.
    fn trickled(chunks: Vec<(Duration, usize)>) -> axum::body::Body {
        let stream = futures::stream::unfold(chunks.into_iter(), |mut chunks| async move {
            let (delay, n) = chunks.next()?;
            tokio::time::sleep(delay).await;
            Some((Ok::<_, std::io::Error>(Bytes::from(vec![b' '; n])), chunks))
        });
        axum::body::Body::from_stream(stream)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_one_byte_a_second_is_cut_by_the_rate_after_the_grace() {
        let started = Instant::now();
        let body = trickled(vec![(Duration::from_secs(1), 1); 100]);
        let err = read(body, LIMITS).await.unwrap_err();
        assert!(matches!(err, BodyError::TooSlow), "{err:?}");
        // Cut at the first check, at the end of the grace, not at the 30 s deadline.
        assert_eq!(started.elapsed(), LIMITS.grace);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_just_above_the_rate_is_read_whole() {
        // 1,100 bytes a second for 20 s, a little above the 1,024 minimum.
        let body = trickled(vec![(Duration::from_millis(100), 110); 200]);
        let bytes = read(body, LIMITS).await.unwrap();
        assert_eq!(bytes.len(), 22_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_body_that_stalls_briefly_is_read_whole() {
        // 64 KiB at once, then a 10 s pause (the average stays far above the minimum).
        let body = trickled(vec![
            (Duration::ZERO, 64 * 1024),
            (Duration::from_secs(10), 10),
        ]);
        assert_eq!(read(body, LIMITS).await.unwrap().len(), 64 * 1024 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_minimum_rate_only_the_deadline_cuts() {
        let started = Instant::now();
        let limits = BodyLimits {
            min_rate: 0,
            ..LIMITS
        };
        let body = trickled(vec![(Duration::from_secs(1), 1); 100]);
        let err = read(body, limits).await.unwrap_err();
        assert!(matches!(err, BodyError::TimedOut), "{err:?}");
        assert_eq!(started.elapsed(), LIMITS.timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_cuts_a_body_fast_enough_but_too_long() {
        let limits = BodyLimits {
            timeout: Duration::from_secs(10),
            ..LIMITS
        };
        // 2 KiB a second, forever.
        let body = trickled(vec![(Duration::from_millis(500), 1024); 1000]);
        let err = read(body, limits).await.unwrap_err();
        assert!(matches!(err, BodyError::TimedOut), "{err:?}");
    }

    #[tokio::test]
    async fn a_body_over_the_size_limit_is_too_large() {
        let limits = BodyLimits {
            max_bytes: 100,
            ..LIMITS
        };
        let body = trickled(vec![(Duration::ZERO, 60), (Duration::ZERO, 60)]);
        let err = read(body, limits).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge), "{err:?}");
        let several = trickled(vec![(Duration::ZERO, 60), (Duration::ZERO, 30)]);
        assert_eq!(read(several, limits).await.unwrap().len(), 90);
    }
}
