//! API Gateway's stage throttling, shared by the HTTP API and the WebSocket gateway: a token
//! bucket per route key (`burst` tokens, `rate` added a second, as the template's
//! `ThrottlingBurstLimit` and `ThrottlingRateLimit` say); a request that finds its route's
//! bucket empty is refused without reaching the function (429 on HTTP and on a WebSocket
//! handshake, a `Too Many Requests` frame for a WebSocket message).

use crate::template::Throttle;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// The buckets of one API's stage, one per route key, across all clients (as on AWS: stage
/// throttles are not per caller).
#[derive(Debug, Default)]
pub struct Throttles {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Throttles {
    /// Takes a token for `route_key`; `false` when there is none (refuse the request).
    pub fn admit(&self, route_key: &str, t: Throttle) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap();
        let (tokens, last) = buckets
            .entry(route_key.to_string())
            .or_insert((t.burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * t.rate).min(t.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_until_it_refills() {
        let t = Throttle {
            rate: 1000.0,
            burst: 3.0,
        };
        let buckets = Throttles::default();
        assert!((0..3).all(|_| buckets.admit("$connect", t)));
        assert!(
            !buckets.admit("$connect", t),
            "the fourth at once is refused"
        );
        assert!(
            buckets.admit("sendMessage", t),
            "each route has its own bucket"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(buckets.admit("$connect", t), "refilled at the rate");
    }
}
