//! The mixed load (`--mix`): many clients in one-to-one chats, groups of 10 and groups of 257 at
//! once, some messages attaching uploaded media, every recipient acknowledging `delivered`; then
//! the checks a user would make: nothing lost, nothing twice, the same order on every device,
//! every acknowledgement visible in `getMessageStatus`.
//!
//! Closed loop: `--in-flight` senders each send their next message when the last one was
//! answered, so the figure is what the stack sustains, not what was offered.

use crate::cloud::Stack;
use crate::load::{histogram, now_us, payload, sent_us};
use crate::{Args, baseline};
use anyhow::{Context, Result, bail};
use courier_client::Session;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod clients;
mod plan;

use clients::{SentRec, State, spawn_acker, spawn_reader, upload};
pub use plan::{Chat, Kind, Planned, Rng, Shares, plan, topology};

/// Runs the mixed load and its checks against `stack`; prints the report and returns it as JSON.
pub async fn run(args: &Args, stack: &Stack) -> Result<Value> {
    let n = args.clients;
    let big = args.big_groups;
    if n < 10 || !n.is_multiple_of(10) || n < 257 * big {
        bail!("--mix: --clients must be a multiple of 10 and at least 257 × --big-groups");
    }
    let t = Instant::now();
    let test_numbers = courier_core::usecases::register_account::TestNumbers::from_config(
        args.test_phone_prefix.as_deref().unwrap_or_default(),
        args.test_phone_code.as_deref().unwrap_or_default(),
    )
    .map_err(anyhow::Error::msg)?;
    let creds = crate::load::register(stack, n, test_numbers.as_ref()).await?;
    eprintln!("registered {n} users in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let sessions = crate::load::connect(stack, &creds).await?;
    eprintln!(
        "connected {n} clients in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let shape = topology(n, big);
    let mut chats = Vec::with_capacity(shape.len());
    for (kind, members) in &shape {
        let first = members[0];
        let id = match kind {
            Kind::Direct => sessions[first]
                .request_with_timeout(
                    "initiateDirectChatSession",
                    json!({"peerUserId": creds[members[1]].user_id}),
                    args.request_timeout,
                )
                .await
                .context("initiateDirectChatSession")?["sessionId"]
                .as_str()
                .context("no sessionId")?
                .to_owned(),
            _ => {
                let others: Vec<&str> = members[1..]
                    .iter()
                    .map(|m| creds[*m].user_id.as_str())
                    .collect();
                sessions[first]
                    .request_with_timeout(
                        "initiateGroupChatSession",
                        json!({"name": kind.name(), "members": others}),
                        args.request_timeout,
                    )
                    .await
                    .context("initiateGroupChatSession")?["groupId"]
                    .as_str()
                    .context("no groupId")?
                    .to_owned()
            }
        };
        chats.push(Chat {
            id,
            members: members.clone(),
            kind: *kind,
        });
    }
    eprintln!(
        "opened {} one-to-one chats, {} groups of 10, {} groups of 257",
        count_kind(&chats, Kind::Direct),
        count_kind(&chats, Kind::Group10),
        count_kind(&chats, Kind::Group257)
    );
    // Group creation posts `system` messages; let them arrive before anything is counted.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let state = Arc::new(State {
        inboxes: (0..n).map(|_| Mutex::default()).collect(),
        receivers: Mutex::default(),
        sent: Mutex::default(),
        progress: AtomicU64::new(0),
        acks: AtomicU64::new(0),
        ack_errors: AtomicU64::new(0),
        acks_pending: AtomicI64::new(0),
        latency: Mutex::new(histogram()),
        completion: Mutex::default(),
        send_reply: Mutex::new(histogram()),
        send_errors: AtomicU64::new(0),
        first_send_error: Mutex::default(),
        media_sent: AtomicU64::new(0),
        last_first_receipt: Mutex::default(),
        chat_of: chats
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), (i, c.members.len() as u32 - 1, c.kind)))
            .collect(),
    });
    for (i, s) in sessions.iter().enumerate() {
        // The group-creation events came before the state existed: drop them.
        while tokio::time::timeout(Duration::from_millis(1), s.next_event())
            .await
            .is_ok_and(|e| e.is_some())
        {}
        let (tx, rx) = mpsc::unbounded_channel();
        spawn_reader(s.clone(), i, state.clone(), tx);
        spawn_acker(s.clone(), rx, state.clone(), args.request_timeout);
    }

    let shares = Shares {
        group10: args.group10_share,
        group257: args.group257_share,
        media: args.media_share,
    };
    let mut rng = Rng::new(args.seed);
    let planned = Arc::new(plan(&shape, args.messages, shares, &mut rng));
    // The baseline runs before the load, on the same DynamoDB Local: its writes to a stream-enabled
    // table grow costly once other streams hold many records (see baseline.rs), so after 50,000
    // messages it would measure the run's leftovers, not the calls.
    let baseline = if args.baseline_messages > 0 {
        let base_plan = plan(
            &shape,
            args.baseline_messages,
            Shares {
                media: 0.0,
                ..shares
            },
            &mut rng,
        );
        let ctx = baseline::Context {
            chats: &chats,
            creds: &creds,
            stack,
            in_flight: args.in_flight,
            payload_bytes: args.payload_bytes,
            ack_share: BASELINE_ACK_SHARE,
        };
        let b = baseline::run(&ctx, &base_plan).await;
        match &b {
            Ok(b) => eprintln!(
                "baseline: {:.1} msg/s ({} DynamoDB calls in {:.1} s)",
                b.per_sec, b.calls, b.secs
            ),
            Err(e) => eprintln!("baseline failed: {e:#}"),
        }
        Some(b)
    } else {
        None
    };
    let chats = Arc::new(chats);
    let by_kind = planned.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(chats[p.chat].kind).or_insert(0u64) += 1;
        m
    });
    eprintln!(
        "sending {} messages ({}) with {} in flight, {} attaching media",
        args.messages,
        by_kind
            .iter()
            .map(|(k, v)| format!("{v} {}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        args.in_flight,
        planned.iter().filter(|p| p.media).count()
    );
    let memory = stack
        .pid()
        .zip(args.memory_every)
        .map(|(pid, every)| (pid, crate::mem::Sampler::start(pid, every)));
    let next = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::new();
    let started = Instant::now();
    let last_reply = Arc::new(Mutex::new(started));
    let mut workers = JoinSet::new();
    for _ in 0..args.in_flight {
        let (planned, chats, sessions, state, next, http, last_reply) = (
            planned.clone(),
            chats.clone(),
            sessions.clone(),
            state.clone(),
            next.clone(),
            http.clone(),
            last_reply.clone(),
        );
        let (bytes, timeout) = (args.payload_bytes, args.request_timeout);
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = planned.get(i as usize) else {
                    break;
                };
                let session = &sessions[p.sender];
                let chat = &chats[p.chat];
                let t0 = Instant::now();
                let mut params = json!({
                    "sessionId": chat.id,
                    "clientMsgId": format!("mix{i}"),
                    "type": "text",
                    "payload": payload(now_us(), i, bytes),
                });
                if p.media {
                    match upload(session, &http, 1024, timeout).await {
                        Ok(id) => {
                            params["type"] = json!("media");
                            params["attachments"] = json!([id]);
                            state.media_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            state.send_failed(format!("media upload: {e:#}"));
                            continue;
                        }
                    }
                }
                match session
                    .request_with_timeout("sendMessage", params, timeout)
                    .await
                {
                    Ok(r) => {
                        let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                        state
                            .send_reply
                            .lock()
                            .unwrap()
                            .saturating_record(us.max(1));
                        *last_reply.lock().unwrap() = Instant::now();
                        match (r["msgId"].as_str(), r["seq"].as_u64()) {
                            (Some(id), Some(seq)) => {
                                state.sent.lock().unwrap().insert(
                                    id.to_owned(),
                                    SentRec {
                                        chat: p.chat,
                                        seq,
                                        sender: p.sender,
                                        want: chat.members.len() as u32 - 1,
                                    },
                                );
                            }
                            _ => state.send_failed(format!("a reply without msgId or seq: {r}")),
                        }
                    }
                    Err(e) => state.send_failed(e.to_string()),
                }
                if i > 0 && i.is_multiple_of(5000) {
                    eprintln!("  {i} sent after {:.0} s", started.elapsed().as_secs_f64());
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let send_secs = last_reply
        .lock()
        .unwrap()
        .duration_since(started)
        .as_secs_f64();
    eprintln!("sent in {send_secs:.1} s; waiting for the last deliveries and receipts");

    // Drain: every message at every recipient and every receipt answered, or nothing moved
    // for `--drain`.
    let mut last = (state.progress.load(Ordering::Relaxed), Instant::now());
    let missing = loop {
        let missing = state.missing();
        if missing == 0 && state.acks_pending.load(Ordering::SeqCst) == 0 {
            break 0;
        }
        let p = state.progress.load(Ordering::Relaxed);
        if p != last.0 {
            last = (p, Instant::now());
        }
        if last.1.elapsed() > args.drain {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delivery_secs = state
        .last_first_receipt
        .lock()
        .unwrap()
        .map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    let memory = memory.map(|(pid, s)| s.stop(pid, started));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The checks.
    let sent = state.sent.lock().unwrap().clone();
    let receivers = state.receivers.lock().unwrap().clone();
    let expected_of = |chat: usize| chats[chat].members.len() as u64 - 1;
    let lost: u64 = sent
        .iter()
        .map(|(id, s)| expected_of(s.chat) - u64::from(receivers.get(id).copied().unwrap_or(0)))
        .sum();
    let deliveries: u64 = receivers
        .iter()
        .filter(|(id, _)| sent.contains_key(*id))
        .map(|(_, k)| u64::from(*k))
        .sum();
    let unexpected = receivers
        .keys()
        .filter(|id| !sent.contains_key(*id))
        .count() as u64;
    let mut duplicates = 0;
    // Per chat, the acknowledged messages in sequence order; each seq must be unique.
    let mut canonical: Vec<Vec<(u64, String, usize)>> = vec![Vec::new(); chats.len()];
    for (id, s) in &sent {
        canonical[s.chat].push((s.seq, id.clone(), s.sender));
    }
    let mut seq_clashes = 0;
    for c in &mut canonical {
        c.sort();
        seq_clashes += c.windows(2).filter(|w| w[0].0 == w[1].0).count();
    }
    // Every member device must have seen exactly the others' messages. Live events are not
    // promised in `seq` order (docs/protocol.md: each send delivers its own message, so in a busy
    // group one can overtake another; the SDK's `Client` reorders by `seq`), so arrival order is
    // measured, not required: how many (device, chat) pairs saw a message after a later one, and
    // how many deliveries arrived after a later message of their chat.
    let (mut incomplete, mut incomplete_pairs) = (Vec::new(), 0u64);
    let mut devices_checked = 0;
    let (mut out_of_order_pairs, mut overtaken) = (0u64, 0u64);
    for (i, inbox) in state.inboxes.iter().enumerate() {
        let inbox = inbox.lock().unwrap();
        duplicates += inbox.duplicates;
        for (ci, chat) in chats.iter().enumerate() {
            if !chat.members.contains(&i) {
                continue;
            }
            devices_checked += 1;
            let want: Vec<&String> = canonical[ci]
                .iter()
                .filter(|(_, _, sender)| *sender != i)
                .map(|(_, id, _)| id)
                .collect();
            let got: Vec<&String> = inbox
                .by_session
                .get(&chat.id)
                .map(|v| v.iter().filter(|id| sent.contains_key(*id)).collect())
                .unwrap_or_default();
            let mut sorted_got = got.clone();
            sorted_got.sort_by_key(|id| sent[*id].seq);
            if want != sorted_got {
                incomplete_pairs += 1;
                if incomplete.len() >= 10 {
                    continue;
                }
                incomplete.push(format!(
                    "client {i} in {} {}: {} expected, {} received, not the same messages",
                    chat.kind.name(),
                    chat.id,
                    want.len(),
                    got.len(),
                ));
            } else if want != got {
                out_of_order_pairs += 1;
                let mut highest = 0;
                for id in &got {
                    let seq = sent[*id].seq;
                    if seq < highest {
                        overtaken += 1;
                    }
                    highest = highest.max(seq);
                }
            }
        }
    }
    // Every acknowledgement must show in getMessageStatus: the last message of every chat
    // (every recipient acknowledged it, directly or by a later one) and a sample of the rest.
    let mut to_check: Vec<(String, usize, usize)> = canonical
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| c.last().map(|(_, id, s)| (id.clone(), ci, *s)))
        .collect();
    let all: Vec<(&String, &SentRec)> = sent.iter().collect();
    for _ in 0..args.status_sample.min(all.len()) {
        let (id, s) = all[rng.below(all.len())];
        to_check.push((id.clone(), s.chat, s.sender));
    }
    let mut status_mismatches = Vec::new();
    let mut status_checked = 0;
    for (id, ci, sender) in &to_check {
        let r = sessions[*sender]
            .request_with_timeout(
                "getMessageStatus",
                json!({"msgId": id}),
                args.request_timeout,
            )
            .await;
        status_checked += 1;
        let want = expected_of(*ci) as usize;
        let ok = r.as_ref().is_ok_and(|v| {
            let recips = v["recipients"].as_array().map_or(&[][..], |a| a.as_slice());
            v["status"] != "sent"
                && recips.len() == want
                && recips
                    .iter()
                    .all(|x| x["status"] == "delivered" || x["status"] == "read")
        });
        if !ok && status_mismatches.len() < 20 {
            status_mismatches.push(format!(
                "{id} in a {}: {}",
                chats[*ci].kind.name(),
                match &r {
                    Ok(v) => format!(
                        "status {} with {} recipients",
                        v["status"],
                        v["recipients"].as_array().map_or(0, Vec::len)
                    ),
                    Err(e) => e.to_string(),
                }
            ));
        }
    }

    let latency = state.latency.lock().unwrap().clone();
    let send_reply = state.send_reply.lock().unwrap().clone();
    let completion = state.completion.lock().unwrap().clone();
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let throughput = sent.len() as f64 / send_secs.max(1e-9);
    let mut report = json!({
        "clients": n,
        "chats": {"oneToOne": count_kind(&chats, Kind::Direct), "groupsOf10": count_kind(&chats, Kind::Group10), "groupsOf257": count_kind(&chats, Kind::Group257)},
        "messagesPlanned": args.messages,
        "messagesByKind": by_kind.iter().map(|(k, v)| (k.name().to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "inFlight": args.in_flight,
        "sent": sent.len(),
        "mediaMessages": state.media_sent.load(Ordering::Relaxed),
        "sendErrors": state.send_errors.load(Ordering::Relaxed),
        "firstSendError": *state.first_send_error.lock().unwrap(),
        "deliveries": deliveries,
        "lost": lost,
        "duplicates": duplicates,
        "unexpected": unexpected,
        "undeliveredAtDrainEnd": missing,
        "seqClashes": seq_clashes,
        "devicesChecked": devices_checked,
        "incompletePairs": incomplete_pairs,
        "arrivedOutOfOrderPairs": out_of_order_pairs,
        "overtakenDeliveries": overtaken,
        "incompleteExamples": incomplete,
        "acks": state.acks.load(Ordering::Relaxed),
        "ackErrors": state.ack_errors.load(Ordering::Relaxed),
        "statusChecked": status_checked,
        "statusMismatches": status_mismatches,
        "sendSecs": send_secs,
        "deliverySecs": delivery_secs,
        "messagesPerSec": throughput,
        "deliveriesPerSec": deliveries as f64 / delivery_secs.max(1e-9),
        "latencyMs": {"p50": ms(&latency, 0.5), "p90": ms(&latency, 0.9), "p99": ms(&latency, 0.99), "max": latency.max() as f64 / 1000.0},
        "sendReplyMs": {"p50": ms(&send_reply, 0.5), "p90": ms(&send_reply, 0.9), "p99": ms(&send_reply, 0.99), "max": send_reply.max() as f64 / 1000.0},
        "completionMs": completion.iter().map(|(k, h)| (k.name().to_owned(), json!({"p50": ms(h, 0.5), "p99": ms(h, 0.99), "n": h.len()}))).collect::<serde_json::Map<_, _>>(),
    });
    if let Some(samples) = &memory {
        report["memory"] = json!(samples);
        eprintln!("\nmemory (MiB, processes):\n{}", crate::mem::table(samples));
        eprintln!("CPU while sending:\n{}", crate::mem::cpu_table(samples));
    }

    match baseline {
        Some(Ok(b)) => {
            report["dynamodbLocalBaseline"] = json!({
                "messages": b.messages,
                "secs": b.secs,
                "messagesPerSec": b.per_sec,
                "dynamodbCalls": b.calls,
                "ackShare": BASELINE_ACK_SHARE,
                "errors": b.errors,
            });
            report["fractionOfDynamodbLocal"] = json!(throughput / b.per_sec.max(1e-9));
        }
        Some(Err(e)) => report["dynamodbLocalBaseline"] = json!({"error": format!("{e:#}")}),
        None => {}
    }

    for s in sessions.iter() {
        s.close().await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    print(&report);
    Ok(report)
}

/// The share of deliveries the baseline acknowledges: all of them, as if no client folded its
/// receipts (the run's clients fold some, about 2% in a 5,000-message run), so the baseline does
/// at least the run's work.
const BASELINE_ACK_SHARE: f64 = 1.0;

fn count_kind(chats: &[Chat], k: Kind) -> usize {
    chats.iter().filter(|c| c.kind == k).count()
}

fn print(r: &Value) {
    println!("\nCourier mixed load: {} clients", r["clients"]);
    println!("  chats                {}", r["chats"]);
    println!("  messages by kind     {}", r["messagesByKind"]);
    println!(
        "  sent                 {} ({} with media), {} send errors {}",
        r["sent"], r["mediaMessages"], r["sendErrors"], r["firstSendError"]
    );
    println!(
        "  deliveries           {} ; lost {} ; duplicates {} ; unexpected {}",
        r["deliveries"], r["lost"], r["duplicates"], r["unexpected"]
    );
    println!(
        "  completeness         {} devices × chats checked, {} miss or add a message; seq clashes {}",
        r["devicesChecked"], r["incompletePairs"], r["seqClashes"]
    );
    println!(
        "  arrival order        {} devices × chats got a message after a later one; {} deliveries overtaken (the SDK reorders by seq)",
        r["arrivedOutOfOrderPairs"], r["overtakenDeliveries"]
    );
    println!(
        "  receipts             {} acks ({} failed); getMessageStatus checked {}, mismatches {}",
        r["acks"],
        r["ackErrors"],
        r["statusChecked"],
        r["statusMismatches"].as_array().map_or(0, Vec::len)
    );
    println!(
        "  throughput           {:.1} msg/s sent ({:.1} s), {:.1} deliveries/s",
        r["messagesPerSec"].as_f64().unwrap_or(0.0),
        r["sendSecs"].as_f64().unwrap_or(0.0),
        r["deliveriesPerSec"].as_f64().unwrap_or(0.0)
    );
    println!("  delivery latency ms  {}", r["latencyMs"]);
    println!("  send reply ms        {}", r["sendReplyMs"]);
    println!("  until all have it    {}", r["completionMs"]);
    if let Some(b) = r.get("dynamodbLocalBaseline") {
        println!("  DynamoDB Local alone {b}");
        println!(
            "  fraction of it       {:.2}",
            r["fractionOfDynamodbLocal"].as_f64().unwrap_or(0.0)
        );
    }
    for e in r["incompleteExamples"].as_array().into_iter().flatten() {
        println!("  incomplete: {e}");
    }
    for e in r["statusMismatches"].as_array().into_iter().flatten() {
        println!("  status: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_puts_everyone_in_a_pair_and_a_group_of_ten() {
        let t = topology(1000, 2);
        let count = |k: Kind| t.iter().filter(|c| c.0 == k).count();
        assert_eq!(
            (
                count(Kind::Direct),
                count(Kind::Group10),
                count(Kind::Group257)
            ),
            (500, 100, 2)
        );
        assert!(t.iter().all(|(k, m)| m.len()
            == match k {
                Kind::Direct => 2,
                Kind::Group10 => 10,
                Kind::Group257 => 257,
            }));
        assert!(t.iter().flat_map(|c| c.1.iter()).all(|m| *m < 1000));
        assert_eq!(t.last().unwrap().1, (257..514).collect::<Vec<_>>());
    }

    #[test]
    fn the_plan_follows_the_shares_and_senders_are_members() {
        let t = topology(1000, 2);
        let shares = Shares {
            group10: 0.2,
            group257: 0.01,
            media: 0.05,
        };
        let p = plan(&t, 20_000, shares, &mut Rng::new(7));
        assert_eq!(p.len(), 20_000);
        assert!(p.iter().all(|m| t[m.chat].1.contains(&m.sender)));
        let share = |k: Kind| p.iter().filter(|m| t[m.chat].0 == k).count() as f64 / 20_000.0;
        assert!(
            (share(Kind::Group10) - 0.2).abs() < 0.02,
            "{}",
            share(Kind::Group10)
        );
        assert!((share(Kind::Group257) - 0.01).abs() < 0.005);
        let media = p.iter().filter(|m| m.media).count() as f64 / 20_000.0;
        assert!((media - 0.05).abs() < 0.01, "{media}");
        // The same seed plans the same messages.
        assert_eq!(p, plan(&t, 20_000, shares, &mut Rng::new(7)));
        assert_ne!(p, plan(&t, 20_000, shares, &mut Rng::new(8)));
    }
}
