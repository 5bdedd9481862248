//! What a client has seen: per session, the highest contiguous seq (the cursor) and the messages
//! seen beyond it; plus the de-duplication and ordering that delivery at-least-once needs.
//!
//! [`Cursors`] is the part that outlives a process (the CLI keeps it in `state.json`). The
//! [`Tracker`] adds what only matters while connected: a bounded set of recently seen message
//! ids, live messages held back until the gap before them is filled (so messages come out in
//! session order), and the idempotency keys of sends in flight (so a client does not show its
//! own message back to itself when a sync reads it before the send's reply arrives).

// The tracker serves the networked client (`native`); the wasm build keeps the cursors only.
#![cfg_attr(not(feature = "native"), allow(dead_code))]
use crate::protocol::{Event, Message};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// One session's cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCursor {
    /// Every message up to this seq has been seen (0: none).
    pub seq: u64,
    /// The id of the message at `seq` (what `readNewMessages` continues from).
    #[serde(default)]
    pub msg_id: Option<String>,
    /// Messages seen beyond `seq` (e.g. this device's own sends past a gap), by seq.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ahead: BTreeMap<u64, String>,
}

impl SessionCursor {
    /// Whether the message at `seq` has been seen.
    pub fn has_seen(&self, seq: u64) -> bool {
        seq <= self.seq || self.ahead.contains_key(&seq)
    }

    /// Records the message at `seq` as seen; whether it was new.
    pub fn mark_seen(&mut self, seq: u64, msg_id: &str) -> bool {
        if self.has_seen(seq) {
            return false;
        }
        if seq == self.seq + 1 {
            self.advance(seq, msg_id.to_owned());
        } else {
            self.ahead.insert(seq, msg_id.to_owned());
        }
        true
    }

    /// Moves the cursor to `seq`, then over every seen message that follows contiguously.
    fn advance(&mut self, seq: u64, msg_id: String) {
        self.seq = seq;
        self.msg_id = Some(msg_id);
        self.ahead.retain(|s, _| *s > seq);
        while let Some(id) = self.ahead.remove(&(self.seq + 1)) {
            self.seq += 1;
            self.msg_id = Some(id);
        }
    }
}

/// Every session's cursor, by session id. Serializes as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursors(pub BTreeMap<String, SessionCursor>);

impl Cursors {
    /// One session's cursor.
    pub fn get(&self, session_id: &str) -> Option<&SessionCursor> {
        self.0.get(session_id)
    }

    /// One session's contiguous seq (0 if unknown).
    pub fn seq(&self, session_id: &str) -> u64 {
        self.get(session_id).map_or(0, |c| c.seq)
    }

    /// Records a message as seen (e.g. one this device sent); whether it was new.
    pub fn mark_seen(&mut self, session_id: &str, seq: u64, msg_id: &str) -> bool {
        self.0
            .entry(session_id.to_owned())
            .or_default()
            .mark_seen(seq, msg_id)
    }

    /// Replaces one session's cursor.
    pub fn set(&mut self, session_id: &str, cursor: SessionCursor) {
        self.0.insert(session_id.to_owned(), cursor);
    }

    /// Folds in another set of cursors, keeping per session whichever saw more.
    pub fn merge(&mut self, other: &Cursors) {
        for (id, theirs) in &other.0 {
            let mine = self.0.entry(id.clone()).or_default();
            if theirs.seq > mine.seq {
                let ahead = std::mem::take(&mut mine.ahead);
                *mine = theirs.clone();
                for (s, m) in ahead {
                    mine.mark_seen(s, &m);
                }
            } else {
                for (s, m) in &theirs.ahead {
                    mine.mark_seen(*s, m);
                }
            }
        }
    }
}

/// A bounded set of message ids, forgetting the oldest first.
#[derive(Debug, Default)]
struct SeenIds {
    order: VecDeque<String>,
    set: HashSet<String>,
    capacity: usize,
}

impl SeenIds {
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: &str) {
        if self.capacity == 0 || !self.set.insert(id.to_owned()) {
            return;
        }
        self.order.push_back(id.to_owned());
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A live event: may be early (a gap before it), late or repeated.
    Live,
    /// `readNewMessages` from the cursor: the server says nothing lies between the cursor and
    /// this message.
    Read,
}

/// What offering a message produced.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Events to emit, in order.
    pub emit: Vec<Event>,
    /// The session's cursor moved.
    pub advanced: bool,
    /// A live message came early: the gap before it should be read.
    pub gap: bool,
}

struct Held {
    msg_id: String,
    event: Event,
}

/// Cursors plus the de-duplication state of a live client.
pub(crate) struct Tracker {
    pub cursors: Cursors,
    held: HashMap<String, BTreeMap<u64, Held>>,
    seen: SeenIds,
    own: HashSet<String>,
    max_held: usize,
}

impl Tracker {
    pub fn new(cursors: Cursors, seen_capacity: usize) -> Self {
        Self {
            cursors,
            held: HashMap::new(),
            seen: SeenIds {
                capacity: seen_capacity,
                ..Default::default()
            },
            own: HashSet::new(),
            max_held: 1000,
        }
    }

    /// A send with this idempotency key is in flight (its message is this client's own).
    pub fn sending(&mut self, client_msg_id: &str) {
        self.own.insert(client_msg_id.to_owned());
    }

    /// The send with this key is over.
    pub fn sent(&mut self, client_msg_id: &str) {
        self.own.remove(client_msg_id);
    }

    /// Whether messages are held back waiting for a gap in this session.
    #[cfg(test)]
    pub fn has_gap(&self, session_id: &str) -> bool {
        self.held.get(session_id).is_some_and(|h| !h.is_empty())
    }

    /// Records this client's own message (from a send's reply); emits held messages it unblocks.
    pub fn note_own(&mut self, session_id: &str, seq: u64, msg_id: &str) -> Outcome {
        self.seen.insert(msg_id);
        let mut out = Outcome::default();
        let cur = self.cursors.0.entry(session_id.to_owned()).or_default();
        let before = cur.seq;
        if let Some(h) = self.held.get_mut(session_id) {
            h.remove(&seq);
        }
        cur.mark_seen(seq, msg_id);
        if cur.seq != before {
            self.drain(session_id, &mut out);
            out.advanced = true;
        }
        out
    }

    /// The server read past every message up to `seq` (`msg_id`) without returning one (they
    /// were withheld from this reader, or disappeared): nothing will come below it, so the
    /// cursor jumps there and what was held behind the gap is released (in order).
    pub fn skip_to(&mut self, session_id: &str, seq: u64, msg_id: &str) -> Outcome {
        let mut out = Outcome::default();
        let cur = self.cursors.0.entry(session_id.to_owned()).or_default();
        if seq <= cur.seq {
            return out;
        }
        // Held messages at or below `seq` can only be this reader's own (seen elsewhere).
        let held = self.held.entry(session_id.to_owned()).or_default();
        let above = held.split_off(&(seq + 1));
        for (_, h) in std::mem::replace(held, above) {
            if !self.seen.contains(&h.msg_id) {
                self.seen.insert(&h.msg_id);
                out.emit.push(h.event);
            }
        }
        cur.advance(seq, msg_id.to_owned());
        // What was held right behind the gap now follows the cursor.
        self.drain(session_id, &mut out);
        out.advanced = true;
        out
    }

    /// Offers a message; `event` is what to emit for it.
    pub fn offer(&mut self, m: &Message, event: Event, origin: Origin) -> Outcome {
        let mut out = Outcome::default();
        let sid = m.session_id.as_str();
        let cur = self.cursors.0.entry(sid.to_owned()).or_default();
        if m.seq <= cur.seq {
            return out;
        }
        let own = m
            .client_msg_id
            .as_deref()
            .is_some_and(|c| self.own.contains(c));
        let already = cur.ahead.contains_key(&m.seq) || self.seen.contains(&m.msg_id) || own;
        let held = self.held.entry(sid.to_owned()).or_default();
        match origin {
            Origin::Read => {
                // Nothing exists between the cursor and this message: anything held below it
                // is released (in order), and the cursor jumps to it.
                let above = held.split_off(&m.seq);
                let below = std::mem::replace(held, above);
                for (_, h) in below {
                    if !self.seen.contains(&h.msg_id) {
                        self.seen.insert(&h.msg_id);
                        out.emit.push(h.event);
                    }
                }
                let event = held.remove(&m.seq).map_or(event, |h| h.event);
                if !already {
                    out.emit.push(event);
                }
                self.seen.insert(&m.msg_id);
                cur.advance(m.seq, m.msg_id.clone());
                out.advanced = true;
            }
            Origin::Live => {
                if already || held.contains_key(&m.seq) {
                    if own {
                        self.seen.insert(&m.msg_id);
                        if cur.mark_seen(m.seq, &m.msg_id) && cur.seq >= m.seq {
                            out.advanced = true;
                        }
                    }
                } else if m.seq == cur.seq + 1 {
                    self.seen.insert(&m.msg_id);
                    out.emit.push(event);
                    cur.advance(m.seq, m.msg_id.clone());
                    out.advanced = true;
                } else {
                    held.insert(
                        m.seq,
                        Held {
                            msg_id: m.msg_id.clone(),
                            event,
                        },
                    );
                    out.gap = true;
                    if held.len() > self.max_held {
                        // Too far behind: show the oldest rather than hold without bound.
                        if let Some((seq, h)) = held.pop_first() {
                            self.seen.insert(&h.msg_id);
                            cur.ahead.insert(seq, h.msg_id);
                            out.emit.push(h.event);
                        }
                    }
                }
            }
        }
        if out.advanced {
            self.drain(sid, &mut out);
        }
        out
    }

    /// Emits held messages that now follow the cursor.
    fn drain(&mut self, session_id: &str, out: &mut Outcome) {
        let Some(held) = self.held.get_mut(session_id) else {
            return;
        };
        let cur = self.cursors.0.entry(session_id.to_owned()).or_default();
        held.retain(|s, _| *s > cur.seq);
        while let Some(h) = held.remove(&(cur.seq + 1)) {
            self.seen.insert(&h.msg_id);
            out.emit.push(h.event);
            cur.advance(cur.seq + 1, h.msg_id);
            held.retain(|s, _| *s > cur.seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageKind;

    fn m(seq: u64) -> Message {
        Message {
            msg_id: format!("s.{seq}"),
            session_id: "s".into(),
            seq,
            sender: "u_peer".into(),
            sender_device: "d".into(),
            client_msg_id: Some(format!("p-{seq}")),
            kind: MessageKind::Text,
            payload: format!("m{seq}"),
            attachments: vec![],
            sent_at: String::new(),
            expires_at: None,
            text: None,
        }
    }

    fn seqs(out: &Outcome) -> Vec<u64> {
        out.emit
            .iter()
            .map(|e| match e {
                Event::Message(m) => m.seq,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn offer(t: &mut Tracker, seq: u64, origin: Origin) -> Outcome {
        t.offer(&m(seq), Event::Message(m(seq)), origin)
    }

    #[test]
    fn live_in_order_duplicates_and_gaps() {
        let mut t = Tracker::new(Cursors::default(), 100);
        assert_eq!(seqs(&offer(&mut t, 1, Origin::Live)), vec![1]);
        assert!(seqs(&offer(&mut t, 1, Origin::Live)).is_empty());
        let o = offer(&mut t, 3, Origin::Live);
        assert!(o.gap && o.emit.is_empty());
        assert!(t.has_gap("s"));
        assert!(seqs(&offer(&mut t, 3, Origin::Live)).is_empty());
        assert_eq!(seqs(&offer(&mut t, 2, Origin::Live)), vec![2, 3]);
        assert_eq!(t.cursors.seq("s"), 3);
        assert!(!t.has_gap("s"));
        assert!(seqs(&offer(&mut t, 2, Origin::Read)).is_empty());
    }

    #[test]
    fn a_skip_moves_the_cursor_past_what_will_never_come_and_releases_what_was_held() {
        let mut t = Tracker::new(Cursors::default(), 100);
        offer(&mut t, 1, Origin::Live);
        // 2 to 5 disappeared; 6 came live and is held behind the gap.
        assert!(offer(&mut t, 6, Origin::Live).emit.is_empty());
        assert_eq!(seqs(&t.skip_to("s", 5, "s.5")), vec![6]);
        assert_eq!(t.cursors.seq("s"), 6);
        // A skip to where the cursor already is changes nothing.
        assert!(!t.skip_to("s", 4, "s.4").advanced);
        assert_eq!(t.cursors.seq("s"), 6);
    }

    #[test]
    fn read_fills_gaps_and_skips_what_was_seen() {
        let mut t = Tracker::new(Cursors::default(), 100);
        offer(&mut t, 1, Origin::Live);
        offer(&mut t, 4, Origin::Live);
        assert_eq!(seqs(&offer(&mut t, 2, Origin::Read)), vec![2]);
        assert_eq!(seqs(&offer(&mut t, 3, Origin::Read)), vec![3, 4]);
        assert!(seqs(&offer(&mut t, 4, Origin::Read)).is_empty());
        assert_eq!(t.cursors.seq("s"), 4);
        assert_eq!(t.cursors.get("s").unwrap().msg_id.as_deref(), Some("s.4"));
    }

    #[test]
    fn own_messages_advance_without_being_emitted() {
        let mut t = Tracker::new(Cursors::default(), 100);
        offer(&mut t, 1, Origin::Live);
        // Our send got seq 3 while 2 (the peer's) is still on its way.
        let mut mine = m(3);
        mine.client_msg_id = Some("mine".into());
        t.sending("mine");
        t.note_own("s", 3, "s.3");
        assert_eq!(t.cursors.seq("s"), 1);
        assert_eq!(seqs(&offer(&mut t, 2, Origin::Live)), vec![2]);
        assert_eq!(t.cursors.seq("s"), 3);
        // A sync reading our own in-flight message does not show it.
        t.sending("mine-2");
        let mut m4 = m(4);
        m4.client_msg_id = Some("mine-2".into());
        assert!(
            t.offer(&m4, Event::Message(m4.clone()), Origin::Read)
                .emit
                .is_empty()
        );
        assert_eq!(t.cursors.seq("s"), 4);
    }

    #[test]
    fn cursors_round_trip_and_merge() {
        let mut c = Cursors::default();
        c.mark_seen("s", 1, "s.1");
        c.mark_seen("s", 3, "s.3");
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"s":{"seq":1,"msgId":"s.1","ahead":{"3":"s.3"}}}"#);
        let back: Cursors = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
        let mut other = Cursors::default();
        other.mark_seen("s", 1, "s.1");
        other.mark_seen("s", 2, "s.2");
        c.merge(&other);
        assert_eq!(c.seq("s"), 3);
        // Imported cursors are honoured: older messages are duplicates.
        let mut t = Tracker::new(c, 10);
        assert!(seqs(&offer(&mut t, 3, Origin::Read)).is_empty());
        assert_eq!(seqs(&offer(&mut t, 4, Origin::Live)), vec![4]);
    }
}
