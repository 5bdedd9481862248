//! The fault switch for tests (`/_local/faults` on the HTTP port), shared by the gateways, the
//! runtime and the proxies: management calls that fail, functions killed, SNS calls and stream
//! reads that fail, sockets dropped (through [`SocketDropper`], which the WebSocket gateway
//! implements, so this module needs nothing of the gateway).

use std::sync::{Arc, Mutex};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as J, json};

use crate::runtime::Functions;

/// What can drop WebSocket connections for [`Faults::drop_sockets`]: the WebSocket gateway.
pub trait SocketDropper: Send + Sync {
    /// Aborts the TCP stream of `share` (0 to 1, rounded to the nearest count, at least one
    /// when above 0 and any are open) of the open connections, chosen at random, without a
    /// close frame; they are gone for the management API at once. Returns how many.
    fn drop_random_sockets(&self, share: f64) -> usize;
}

/// Management API operations, for the fault switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagementOp {
    /// `POST /@connections/{id}`.
    Post,
    /// `GET /@connections/{id}`.
    Get,
    /// `DELETE /@connections/{id}`.
    Delete,
}

/// The fault switch for tests (`/_local/faults` on the HTTP port): management calls that fail at
/// random, a one-shot kill of a function's busy processes after so many delivered posts,
/// processes killed at random mid-invocation, SNS calls that fail at random and stream reads that
/// fail when armed (both through the fault proxy), and WebSocket connections dropped
/// without a close frame. Clones share one switch.
#[derive(Clone, Default)]
pub struct Faults {
    inner: Arc<FaultsInner>,
}

#[derive(Default)]
struct FaultsInner {
    functions: Mutex<Functions>,
    state: Mutex<FaultState>,
    /// The gateway whose sockets `drop_sockets` drops (set once it exists).
    gateway: Mutex<Option<std::sync::Weak<dyn SocketDropper>>>,
    /// Share of SNS calls the SNS proxy answers 500, and how many it did.
    sns: Mutex<(f64, u64)>,
    /// `GetRecords` calls the DynamoDB Streams proxy is armed to fail.
    streams: Mutex<StreamFaults>,
    /// Sockets dropped so far.
    dropped_sockets: std::sync::atomic::AtomicU64,
    /// GSI lag and transaction conflicts, through the functions' DynamoDB proxy.
    dynamodb: Arc<crate::dynamodb_faults::DynamoFaults>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Share of management calls answered with `management_error`.
    failure_rate: f64,
    /// What they answer.
    management_error: ManagementFault,
    kill: Option<KillAfterPosts>,
    kills: u64,
    last_kill: Option<(String, usize)>,
    injected_errors: u64,
}

/// What a management call failed by the fault switch answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ManagementFault {
    /// 500 `{"message":"Internal server error"}` (the SDK retries it).
    #[default]
    InternalServerError,
    /// 429 `LimitExceededException`: API Gateway's throttling, or the client's buffer full.
    LimitExceeded,
}

impl ManagementFault {
    /// The name the fault switch's JSON uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::InternalServerError => "InternalServerError",
            Self::LimitExceeded => "LimitExceededException",
        }
    }

    /// From [`ManagementFault::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::InternalServerError, Self::LimitExceeded]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// What an armed `GetRecords` answers instead of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// 400 `ExpiredIteratorException`, as for an iterator over 15 minutes old.
    ExpiredIterator,
    /// 500 `InternalServerError` (the SDK retries it twice).
    InternalError,
}

#[derive(Debug, Default)]
struct StreamFaults {
    /// Only reads of this table's stream; every table's when `None`.
    table: Option<String>,
    /// `GetRecords` calls still to answer `ExpiredIteratorException`.
    expired: u64,
    /// Then those still to answer 500.
    failures: u64,
    injected_expired: u64,
    injected_failures: u64,
}

#[derive(Debug)]
struct KillAfterPosts {
    function: String,
    posts: u64,
    remaining: u64,
}

impl Faults {
    /// A switch that can kill the processes of `functions`; nothing is armed.
    pub fn new(functions: Functions) -> Self {
        Self {
            inner: Arc::new(FaultsInner {
                functions: Mutex::new(functions),
                ..Default::default()
            }),
        }
    }

    /// The functions whose processes the switch kills (when made before them).
    pub fn set_functions(&self, functions: Functions) {
        *self.inner.functions.lock().unwrap() = functions;
    }

    fn functions(&self) -> Functions {
        self.inner.functions.lock().unwrap().clone()
    }

    /// The DynamoDB faults (GSI lag, transaction conflicts).
    pub fn dynamodb(&self) -> &Arc<crate::dynamodb_faults::DynamoFaults> {
        &self.inner.dynamodb
    }

    /// The gateway whose connections [`Faults::drop_sockets`] drops.
    pub fn attach_gateway(&self, gateway: std::sync::Weak<dyn SocketDropper>) {
        *self.inner.gateway.lock().unwrap() = Some(gateway);
    }

    /// Arms random kills: each invocation of `function` (a logical id, or `*` for every
    /// function) has `rate` (0 to 1) chance of its process being SIGKILLed while it runs;
    /// `seed` makes the draws repeat.
    pub fn set_random_kills(
        &self,
        function: &str,
        rate: f64,
        seed: Option<u64>,
    ) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("rate {rate} is not within 0..=1"));
        }
        if function != "*" && self.functions().get(function).is_none() {
            return Err(format!("no function {function} in the template"));
        }
        self.functions().random_kills().set(function, rate, seed);
        Ok(())
    }

    /// Makes `rate` (0 to 1) of SNS calls through the local cloud's SNS proxy answer 500.
    pub fn set_sns_failure_rate(&self, rate: f64) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("failureRate {rate} is not within 0..=1"));
        }
        self.inner.sns.lock().unwrap().0 = rate;
        Ok(())
    }

    /// Whether this SNS call should fail (counts it if so).
    pub fn sns_fault(&self) -> bool {
        let mut s = self.inner.sns.lock().unwrap();
        if s.0 <= 0.0 || rand::random::<f64>() >= s.0 {
            return false;
        }
        s.1 += 1;
        true
    }

    /// Arms the stream pollers' next reads of `table`'s stream (every table's when `None`),
    /// through the DynamoDB Streams proxy: the next `expired` `GetRecords` calls answer
    /// `ExpiredIteratorException`, then the next `failures` answer 500 `InternalServerError`.
    /// Replaces what was armed before; the counts of what fired stay.
    pub fn arm_stream_faults(&self, table: Option<&str>, expired: u64, failures: u64) {
        let mut s = self.inner.streams.lock().unwrap();
        s.table = table.map(str::to_owned);
        s.expired = expired;
        s.failures = failures;
    }

    /// What this `GetRecords` answers, if it is armed to fail (counts it if so).
    /// `shard_iterator` gives the request's iterator; it is called only while a fault is armed
    /// for one table, so unarmed reads cost no parsing.
    pub fn stream_fault(&self, shard_iterator: impl FnOnce() -> String) -> Option<StreamFault> {
        let mut s = self.inner.streams.lock().unwrap();
        if s.expired == 0 && s.failures == 0 {
            return None;
        }
        if let Some(table) = &s.table
            && !shard_iterator().contains(&format!(":table/{table}/stream/"))
        {
            return None;
        }
        if s.expired > 0 {
            s.expired -= 1;
            s.injected_expired += 1;
            Some(StreamFault::ExpiredIterator)
        } else {
            s.failures -= 1;
            s.injected_failures += 1;
            Some(StreamFault::InternalError)
        }
    }

    /// Aborts the TCP stream of `share` (0 to 1, rounded to the nearest count, at least one when
    /// above 0 and any are open) of the open WebSocket connections, chosen at random, without a
    /// close frame. The gateway then treats each as a dropped connection (1006): `$disconnect`
    /// runs and a later `POST /@connections/{id}` is 410 Gone. Returns how many.
    pub fn drop_sockets(&self, share: f64) -> Result<usize, String> {
        if !(0.0..=1.0).contains(&share) {
            return Err(format!("share {share} is not within 0..=1"));
        }
        let gw = self.inner.gateway.lock().unwrap().clone();
        let Some(gw) = gw.and_then(|w| w.upgrade()) else {
            return Ok(0);
        };
        let n = gw.drop_random_sockets(share);
        self.inner
            .dropped_sockets
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    /// Makes `rate` (0 to 1) of management calls answer 500 `{"message":"Internal server error"}`.
    pub fn set_management_failure_rate(&self, rate: f64) -> Result<(), String> {
        self.set_management_faults(rate, ManagementFault::InternalServerError)
    }

    /// Makes `rate` (0 to 1) of management calls answer `error`.
    pub fn set_management_faults(&self, rate: f64, error: ManagementFault) -> Result<(), String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("failureRate {rate} is not within 0..=1"));
        }
        let mut s = self.inner.state.lock().unwrap();
        s.failure_rate = rate;
        s.management_error = error;
        Ok(())
    }

    /// Arms the one-shot fault: after the `posts`-th successful `POST /@connections/{id}` from
    /// now on, every process of `function` that is in the middle of an invocation is killed.
    pub fn arm_kill_after_posts(&self, function: &str, posts: u64) -> Result<(), String> {
        if self.functions().get(function).is_none() {
            return Err(format!("no function {function} in the template"));
        }
        if posts == 0 {
            return Err("posts must be at least 1".into());
        }
        self.inner.state.lock().unwrap().kill = Some(KillAfterPosts {
            function: function.to_string(),
            posts,
            remaining: posts,
        });
        Ok(())
    }

    /// Disarms everything.
    pub fn clear(&self) {
        let mut s = self.inner.state.lock().unwrap();
        s.failure_rate = 0.0;
        s.kill = None;
        self.inner.sns.lock().unwrap().0 = 0.0;
        let mut streams = self.inner.streams.lock().unwrap();
        streams.expired = 0;
        streams.failures = 0;
        drop(streams);
        self.functions().random_kills().clear();
        self.inner.dynamodb.clear();
    }

    /// What is set, and what has fired, as `GET /_local/faults` shows it.
    pub fn describe(&self) -> J {
        let s = self.inner.state.lock().unwrap();
        let sns = *self.inner.sns.lock().unwrap();
        let streams = self.inner.streams.lock().unwrap();
        let functions = self.functions();
        let rk = functions.random_kills();
        let (gsi_lag, transaction_conflicts) = self.inner.dynamodb.describe();
        json!({
            "gsiLag": gsi_lag,
            "transactionConflicts": transaction_conflicts,
            "management": {
                "failureRate": s.failure_rate,
                "error": s.management_error.name(),
                "injectedErrors": s.injected_errors,
            },
            "sns": {"failureRate": sns.0, "injectedErrors": sns.1},
            "streams": {
                "table": streams.table,
                "expiredIterators": streams.expired,
                "failures": streams.failures,
                "injectedExpired": streams.injected_expired,
                "injectedFailures": streams.injected_failures,
            },
            "killRandom": {
                "armed": rk.armed().map(|(f, r)| json!({"function": f, "rate": r})),
                "kills": rk.kills(),
            },
            "droppedSockets": self.inner.dropped_sockets.load(std::sync::atomic::Ordering::Relaxed),
            "killAfterPosts": s.kill.as_ref().map(|k| json!({
                "function": k.function,
                "posts": k.posts,
                "remaining": k.remaining,
            })),
            "kills": s.kills,
            "lastKill": s.last_kill.as_ref().map(|(f, n)| json!({"function": f, "processes": n})),
        })
    }

    /// A response to return instead of performing `op`, if this call should fail.
    pub fn management_fault(&self, op: ManagementOp, connection_id: &str) -> Option<Response> {
        let mut s = self.inner.state.lock().unwrap();
        if s.failure_rate <= 0.0 || rand::random::<f64>() >= s.failure_rate {
            return None;
        }
        s.injected_errors += 1;
        let error = s.management_error;
        drop(s);
        tracing::info!(connection = %connection_id, "fault injection: failing {op:?} with {error:?}");
        Some(match error {
            ManagementFault::InternalServerError => {
                message_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
            }
            ManagementFault::LimitExceeded => management_error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "Rate exceeded",
            ),
        })
    }

    /// Counts a delivered `POST /@connections/{id}`; fires the armed kill on the last one.
    pub fn post_delivered(&self) {
        let function = {
            let mut s = self.inner.state.lock().unwrap();
            let Some(k) = s.kill.as_mut() else {
                return;
            };
            k.remaining = k.remaining.saturating_sub(1);
            if k.remaining > 0 {
                return;
            }
            let f = k.function.clone();
            s.kill = None;
            f
        };
        let killed = self.functions().get(&function).map_or(0, |p| p.kill_busy());
        tracing::warn!("fault injection: killed {killed} busy process(es) of {function}");
        let mut s = self.inner.state.lock().unwrap();
        s.kills += 1;
        s.last_kill = Some((function, killed));
    }
}
/// An error of the management API as API Gateway sends it (restJson1): the status, the error's
/// shape name in `x-amzn-ErrorType`, and `{"message": ...}`; the SDKs read the type from the
/// header (botocore's `apigatewaymanagementapi` model: GoneException 410, ForbiddenException
/// 403, PayloadTooLargeException 413, LimitExceededException 429).
pub fn management_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut r = message_body(status, message);
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// A gateway error body, `{"message": ...}`, as API Gateway answers.
pub(crate) fn message_body(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"message": text}))).into_response()
}
