//! The driver: connects, reconnects with backoff, and runs each connection until it drops;
//! and the per-session turn order of sends.

use super::*;

pub(super) async fn open(config: &ClientConfig) -> Result<Session, ConnectError> {
    Session::connect(&config.ws_url, &config.api_key).await
}

/// What the reconnect backoff waits with: [`TokioTimer`] sleeps; a test passes a clock of its
/// own, which sees every delay the client chose and decides when each wait ends, so the schedule
/// is checked without measuring time.
pub trait BackoffTimer: Send + Sync + std::fmt::Debug {
    /// Waits `delay` before the next connection attempt.
    fn sleep(&self, delay: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The default [`BackoffTimer`]: `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

impl BackoffTimer for TokioTimer {
    fn sleep(&self, delay: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling to the max.
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            initial,
            max,
            next: initial,
            seed,
        }
    }

    pub(super) fn reset(&mut self) {
        self.next = self.initial;
    }

    pub(super) fn delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(self.max);
        // xorshift: good enough to spread reconnects.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let half = d / 2;
        let span = half.as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 { 0 } else { self.seed % (span + 1) })
    }
}

/// Resolves once the stop flag is set.
pub(super) async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The background task: connect, sync, read events, reconnect.
pub(super) async fn drive(inner: Arc<Inner>, mut first: Option<Session>) {
    let cfg = inner.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let mut stop = inner.stop.subscribe();
    let unauthorized = 'outer: loop {
        if *stop.borrow() {
            break false;
        }
        let session = match first.take() {
            Some(s) => s,
            None => {
                let attempt = tokio::select! {
                    r = open(&cfg) => r,
                    _ = until_stopped(&mut stop) => break false,
                };
                match attempt {
                    Ok(s) => s,
                    Err(ConnectError::Refused(401)) => break true,
                    Err(e) => {
                        tracing::debug!("connect failed: {e}");
                        let wait = backoff.delay();
                        tokio::select! {
                            _ = cfg.backoff_timer.sleep(wait) => continue,
                            _ = until_stopped(&mut stop) => break false,
                        }
                    }
                }
            }
        };
        let session = Arc::new(session);
        let up_since = Instant::now();
        inner.published.send_replace(false);
        inner.conn.send_replace(Conn::Up(session.clone()));
        inner.emit(vec![Event::Connected]);
        tokio::select! {
            () = inner.publish_keys(&session) => {}
            _ = until_stopped(&mut stop) => {
                session.close().await;
                break 'outer false;
            }
        }

        let mut want_sync = cfg.sync_on_connect;
        let mut keepalive = cfg
            .keepalive
            .map(|p| tokio::time::interval_at(Instant::now() + p, p));
        loop {
            if want_sync {
                want_sync = false;
                let sync = tokio::select! {
                    r = inner.sync_all(&session) => r,
                    _ = until_stopped(&mut stop) => {
                        session.close().await;
                        break 'outer false;
                    }
                };
                match sync {
                    Ok(()) => inner.emit(vec![Event::Synced]),
                    Err(e) if e.is_retryable() => tracing::debug!("sync interrupted: {e}"),
                    Err(e) => inner.emit(vec![Event::Error(format!("sync failed: {e}"))]),
                }
            }
            let tick = async {
                match keepalive.as_mut() {
                    Some(k) => {
                        k.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = session.next_event() => match frame {
                    Some(v) => inner.on_frame(&session, v).await,
                    None => break,
                },
                _ = inner.sync_now.notified() => want_sync = true,
                _ = tick => crate::heartbeat::spawn(session.clone(), cfg.request_timeout),
                _ = until_stopped(&mut stop) => {
                    session.close().await;
                    break 'outer false;
                }
            }
        }
        inner.conn.send_replace(Conn::Connecting);
        inner.emit(vec![Event::Disconnected]);
        if up_since.elapsed() >= cfg.healthy_after {
            backoff.reset();
        }
        let wait = backoff.delay();
        tokio::select! {
            _ = cfg.backoff_timer.sleep(wait) => {}
            _ = until_stopped(&mut stop) => break false,
        }
    };
    if let Conn::Up(s) = inner.conn.borrow().clone() {
        s.abort();
    }
    inner.conn.send_replace(Conn::Stopped { unauthorized });
    let mut st = inner.state.lock().unwrap();
    if unauthorized {
        emit(&st.events, vec![Event::Unauthorized]);
    }
    st.events = None;
}

/// A queue per session for [`Client::send`]: tokio's mutex hands its lock out first come, first
/// served, so sends to one session are made in the order they were called.
#[derive(Default)]
pub(super) struct SendOrder {
    sessions: Mutex<std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

impl SendOrder {
    /// Waits for `session_id`'s earlier sends; the turn lasts as long as the guard.
    pub(super) async fn turn(&self, session_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut sessions = self.sessions.lock().unwrap();
            // Forget the sessions nobody is sending to (their lock is gone).
            sessions.retain(|_, w| w.strong_count() > 0);
            match sessions.get(session_id).and_then(std::sync::Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    sessions.insert(session_id.to_owned(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use super::SendOrder;
    use futures_util::FutureExt as _;

    #[tokio::test]
    pub(super) async fn sends_to_one_session_take_turns_in_call_order() {
        let order = SendOrder::default();
        let first = order.turn("s").await;
        // Another session is not held up.
        assert!(order.turn("t").now_or_never().is_some());
        let mut second = Box::pin(order.turn("s"));
        assert!(
            second.as_mut().now_or_never().is_none(),
            "waits for the first"
        );
        let mut third = Box::pin(order.turn("s"));
        assert!(third.as_mut().now_or_never().is_none());
        drop(first);
        let second = second.await;
        // First come, first served: the third still waits for the second.
        assert!(third.as_mut().now_or_never().is_none());
        drop(second);
        third.await;
    }

    use std::time::Duration;

    #[test]
    pub(super) fn backoff_doubles_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.delay();
            assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} vs {ceiling:?}");
            ceiling = (ceiling * 2).min(Duration::from_secs(10));
        }
        assert_eq!(ceiling, Duration::from_secs(10));
        b.reset();
        assert!(b.delay() <= Duration::from_millis(100));
    }
}
