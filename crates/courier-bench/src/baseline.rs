//! What DynamoDB Local sustains for the same calls, measured in the same run (`--mix` with
//! `--baseline-messages`): the functions' own use cases (`sendMessage` with its inline delivery, `ackMessages`)
//! and DynamoDB adapters run in this process straight against the same DynamoDB Local, with the
//! same number of messages in flight, and nothing else in the way (no gateway, no Lambda runtime,
//! stream poller, no management API: posts go nowhere).
//!
//! It writes to copies of the tables (same keys, indexes and stream settings as the local cloud
//! made them: only the messages table has a stream, and nothing reads the copy's, so the local
//! cloud's fan-out does not see these messages), holding a copy of the memberships, connections
//! and users of the run, so every read finds what it found in the real run.
//!
//! It runs before the load, once the chats exist. DynamoDB Local, on every write to a table with
//! a stream, looks the stream's first sequence number up (`SELECT MIN(SequenceNumber) ... WHERE
//! StreamID = ?`, in `getStreamDescription`), and that grows costly when other streams already
//! hold many records: run after a 50,000-message load, the copy's writes crawled (about 2
//! messages a second, the thread dumps all in that query) while the run's own stream had stayed
//! fast throughout. That would measure the run's leftovers, not the calls.

use crate::cloud::Stack;
use crate::mix::{Chat, Planned};
use anyhow::{Context as _, Result, bail};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    BillingMode, GlobalSecondaryIndex, LocalSecondaryIndex, PutRequest, WriteRequest,
};
use courier_aws::dynamo::{
    DynamoConnections, DynamoMessages, DynamoRateLimiter, DynamoSessions, DynamoSettings,
};
use courier_core::chat::Receipt;
use courier_core::clock::SystemClock;
use courier_core::ids::{ConnectionId, DeviceId, UserId};
use courier_core::ports::{ConnectionGateway, DeviceCredential, GatewayError};
use courier_core::protocol::{AckMessagesParams, Credentials, SendMessageParams};
use courier_core::rate_limit::{Rule, Throttle};
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::{fan_out, receipts, send_message};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What the baseline needs from the run.
pub struct Context<'a> {
    /// The run's conversations.
    pub chats: &'a [Chat],
    /// The run's users.
    pub creds: &'a [Credentials],
    /// The local cloud (its DynamoDB Local endpoint and table prefix).
    pub stack: &'a Stack,
    /// Messages in flight at once.
    pub in_flight: usize,
    /// Payload bytes.
    pub payload_bytes: usize,
    /// Acks per delivery in the real run (clients fold receipts): each recipient acknowledges
    /// each message with this probability here, so both do the same number of acks.
    pub ack_share: f64,
}

/// What it measured.
pub struct Outcome {
    /// Messages sent, fanned out and acknowledged.
    pub messages: u64,
    /// Seconds taken.
    pub secs: f64,
    /// Messages per second.
    pub per_sec: f64,
    /// DynamoDB calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
}

/// Posts go nowhere.
struct NoGateway;

#[async_trait]
impl ConnectionGateway for NoGateway {
    async fn post(&self, _: &ConnectionId, _: &str) -> Result<(), GatewayError> {
        Ok(())
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), GatewayError> {
        Ok(())
    }
}

const COPIED: [&str; 3] = ["SessionsTable", "ConnectionsTable", "UsersTable"];
const EMPTY: [&str; 2] = ["MessagesTable", "RateLimitTable"];

/// Creates `dst` with `src`'s keys, indexes and stream setting (on demand); copies the items too
/// when `items`.
async fn copy_table(db: &Client, src: &str, dst: &str, items: bool) -> Result<()> {
    let d = db
        .describe_table()
        .table_name(src)
        .send()
        .await
        .with_context(|| format!("DescribeTable {src}"))?;
    let t = d.table.context("no table description")?;
    let mut create = db
        .create_table()
        .table_name(dst)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(t.key_schema)
        .set_attribute_definitions(t.attribute_definitions)
        .set_stream_specification(t.stream_specification);
    for g in t.global_secondary_indexes.unwrap_or_default() {
        create = create.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .set_index_name(g.index_name)
                .set_key_schema(g.key_schema)
                .set_projection(g.projection)
                .build()?,
        );
    }
    for l in t.local_secondary_indexes.unwrap_or_default() {
        create = create.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .set_index_name(l.index_name)
                .set_key_schema(l.key_schema)
                .set_projection(l.projection)
                .build()?,
        );
    }
    create
        .send()
        .await
        .with_context(|| format!("CreateTable {dst}"))?;
    if !items {
        return Ok(());
    }
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(src)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        for chunk in page.items().chunks(25) {
            let mut pending = chunk
                .iter()
                .map(|i| {
                    let put = PutRequest::builder().set_item(Some(i.clone())).build()?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<_>, aws_sdk_dynamodb::error::BuildError>>()?;
            while !pending.is_empty() {
                let r = db
                    .batch_write_item()
                    .request_items(dst, pending)
                    .send()
                    .await?;
                pending = r
                    .unprocessed_items
                    .and_then(|mut u| u.remove(dst))
                    .unwrap_or_default();
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(());
        }
    }
}

fn who(c: &Credentials) -> DeviceCredential {
    DeviceCredential {
        user_id: UserId::from_trusted(c.user_id.clone()),
        device_id: DeviceId::from_trusted(c.device_id.clone()),
    }
}

async fn ack(
    deps: &'static receipts::AckDeps<'static>,
    who: DeviceCredential,
    p: AckMessagesParams,
) -> bool {
    receipts::ack_messages(deps, &who, p).await.is_ok()
}

/// Sends, fans out and acknowledges `plan` straight against DynamoDB Local.
pub async fn run(ctx: &Context<'_>, plan: &[Planned]) -> Result<Outcome> {
    let Some((endpoint, prefix)) = &ctx.stack.dynamodb else {
        bail!("the baseline needs the local cloud this benchmark started (not --http-url)");
    };
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "bench",
        ))
        .load()
        .await;
    let db = Client::new(&sdk);
    let tables = db
        .list_tables()
        .send()
        .await?
        .table_names
        .unwrap_or_default();
    let name = |logical: &str| -> Result<String> {
        let want = format!("{prefix}-{logical}");
        tables
            .iter()
            .find(|t| **t == want)
            .cloned()
            .with_context(|| format!("no table {want} among {tables:?}"))
    };
    let copy = |logical: &str| format!("{prefix}-baseline-{logical}");
    for t in COPIED {
        copy_table(&db, &name(t)?, &copy(t), true).await?;
    }
    for t in EMPTY {
        copy_table(&db, &name(t)?, &copy(t), false).await?;
    }
    let sessions: &'static DynamoSessions = Box::leak(Box::new(DynamoSessions::new(
        db.clone(),
        copy("SessionsTable"),
    )));
    let messages: &'static DynamoMessages = Box::leak(Box::new(DynamoMessages::new(
        db.clone(),
        copy("MessagesTable"),
        copy("SessionsTable"),
    )));
    let connections: &'static DynamoConnections = Box::leak(Box::new(DynamoConnections::new(
        db.clone(),
        copy("ConnectionsTable"),
    )));
    let settings: &'static DynamoSettings = Box::leak(Box::new(DynamoSettings::new(
        db.clone(),
        copy("UsersTable"),
    )));
    let limiter: &'static DynamoRateLimiter = Box::leak(Box::new(DynamoRateLimiter::new(
        db.clone(),
        copy("RateLimitTable"),
    )));
    let send_deps: &'static send_message::Deps<'static> = Box::leak(Box::new(send_message::Deps {
        sessions,
        messages,
        clock: &SystemClock,
        media: None,
        // As the function: a direct message looks up whether the peer blocked the sender.
        blocks: Some(settings),
        // The functions take a token on every send too (the bench's cloud lifts the burst).
        throttle: Some(Throttle {
            limiter,
            rule: Rule::TokenBucket {
                burst: 1_000_000,
                interval_ms: 1000,
            },
        }),
    }));
    let deliverer = || Deliverer {
        presence: connections,
        connections,
        gateway: &NoGateway,
        push: None,
    };
    let fan: &'static Deliverer<'static> = Box::leak(Box::new(deliverer()));
    let ack_deps: &'static receipts::AckDeps<'static> = Box::leak(Box::new(receipts::AckDeps {
        sessions,
        messages,
        deliver: deliverer(),
        settings,
        clock: &SystemClock,
    }));

    eprintln!(
        "DynamoDB Local baseline: {} messages, {} in flight, the same use cases in-process",
        plan.len(),
        ctx.in_flight
    );
    let plan: Arc<Vec<Planned>> = Arc::new(plan.to_vec());
    let chats: Arc<Vec<Chat>> = Arc::new(ctx.chats.to_vec());
    let creds: Arc<Vec<Credentials>> = Arc::new(ctx.creds.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let calls_before = courier_aws::capacity::snapshot().dynamodb_calls;
    let started = Instant::now();
    // Driven on this task (not spawned): the core's delivery future trips the compiler's
    // higher-ranked `Send` check when spawned; the calls still overlap, on one thread.
    let mut workers = Vec::new();
    for w in 0..ctx.in_flight {
        let (plan, chats, creds, next, errors) = (
            plan.clone(),
            chats.clone(),
            creds.clone(),
            next.clone(),
            errors.clone(),
        );
        let (bytes, ack_share) = (ctx.payload_bytes, ctx.ack_share);
        workers.push(async move {
            let mut rng = crate::mix::Rng::new(w as u64 + 1000);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = plan.get(i as usize) else {
                    break;
                };
                let chat = &chats[p.chat];
                let sender = who(&creds[p.sender]);
                let body = crate::load::payload(crate::load::now_us(), i, bytes);
                let params = SendMessageParams {
                    session_id: chat.id.clone(),
                    client_msg_id: format!("base{i}"),
                    kind: "text".into(),
                    payload: body.clone(),
                    attachments: Vec::new(),
                };
                // The same calls as the deployed path: the send, then its inline delivery
                // (members of a group, presence, posts, the recorded outcome).
                let sent = match send_message::send(send_deps, &sender, params).await {
                    Ok(s) => s,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let Some(out) = sent.outbound else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let msg_id = out.message.msg_id.clone();
                let (_, delivered) = fan_out::deliver_inline(sessions, fan, messages, &out).await;
                if delivered.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                let msg_id = msg_id.as_str();
                let mut acks = Vec::new();
                for m in &chat.members {
                    if *m == p.sender || rng.unit() >= ack_share {
                        continue;
                    }
                    let params = AckMessagesParams {
                        session_id: chat.id.clone(),
                        msg_id: msg_id.to_owned(),
                        status: Receipt::Delivered,
                    };
                    acks.push(ack(ack_deps, who(&creds[*m]), params));
                }
                for r in futures_util::future::join_all(acks).await {
                    if !r {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    futures_util::future::join_all(workers).await;
    let secs = started.elapsed().as_secs_f64();
    let messages = plan.len() as u64 - errors.load(Ordering::Relaxed).min(plan.len() as u64);
    Ok(Outcome {
        messages,
        secs,
        per_sec: messages as f64 / secs.max(1e-9),
        calls: courier_aws::capacity::snapshot().dynamodb_calls - calls_before,
        errors: errors.load(Ordering::Relaxed),
    })
}
