//! Sessions, groups and messages.

use crate::chat::{
    Appended, Draft, InlineOutcome, Membership, Message, Receipt, Role, SessionKind, Tail,
    Watermark,
};
use crate::error::PortError;
use crate::ids::{MsgId, SessionId, UserId};
use crate::ports::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Sessions, memberships and watermarks, and group records, in maps.
#[derive(Default)]
pub struct MemorySessions(
    Mutex<BTreeMap<(SessionId, UserId), Membership>>,
    Mutex<BTreeMap<SessionId, Group>>,
);

#[async_trait]
impl GroupStore for MemorySessions {
    async fn create_group(
        &self,
        group: &Group,
        members: &[(UserId, Role)],
    ) -> Result<(), PortError> {
        let mut groups = self.1.lock().unwrap();
        if groups.contains_key(&group.session_id) {
            return Err(PortError::Conflict);
        }
        let mut map = self.0.lock().unwrap();
        for (u, role) in members {
            map.insert(
                (group.session_id.clone(), u.clone()),
                Membership {
                    session_id: group.session_id.clone(),
                    kind: SessionKind::Group,
                    user_id: u.clone(),
                    joined_at: group.created_at,
                    joined_seq: 0,
                    role: *role,
                    delivered: Watermark::default(),
                    read: Watermark::default(),
                },
            );
        }
        groups.insert(
            group.session_id.clone(),
            Group {
                member_count: members.len() as u32,
                ..group.clone()
            },
        );
        Ok(())
    }

    async fn group(&self, session: &SessionId) -> Result<Option<Group>, PortError> {
        Ok(self.1.lock().unwrap().get(session).cloned())
    }

    async fn group_sizes(&self) -> Result<Vec<u32>, PortError> {
        let groups = self.1.lock().unwrap();
        let members = self.0.lock().unwrap();
        Ok(groups
            .keys()
            .map(|g| members.keys().filter(|(s, _)| s == g).count() as u32)
            .collect())
    }

    async fn add_member(
        &self,
        session: &SessionId,
        user: &UserId,
        joined_seq: u64,
        max: u32,
        at: DateTime<Utc>,
    ) -> Result<Added, PortError> {
        let mut groups = self.1.lock().unwrap();
        let Some(g) = groups.get_mut(session) else {
            return Ok(Added::NoGroup);
        };
        let mut map = self.0.lock().unwrap();
        let key = (session.clone(), user.clone());
        if map.contains_key(&key) {
            return Ok(Added::AlreadyMember);
        }
        if g.member_count >= max {
            return Ok(Added::Full);
        }
        g.member_count += 1;
        map.insert(
            key,
            Membership {
                session_id: session.clone(),
                kind: SessionKind::Group,
                user_id: user.clone(),
                joined_at: at,
                joined_seq,
                role: Role::Member,
                delivered: Watermark::default(),
                read: Watermark::default(),
            },
        );
        Ok(Added::Added)
    }

    async fn remove_member(&self, session: &SessionId, user: &UserId) -> Result<bool, PortError> {
        let mut groups = self.1.lock().unwrap();
        let removed = self
            .0
            .lock()
            .unwrap()
            .remove(&(session.clone(), user.clone()))
            .is_some();
        if removed && let Some(g) = groups.get_mut(session) {
            g.member_count -= 1;
        }
        Ok(removed)
    }

    async fn set_role(
        &self,
        session: &SessionId,
        user: &UserId,
        role: Role,
    ) -> Result<bool, PortError> {
        match self
            .0
            .lock()
            .unwrap()
            .get_mut(&(session.clone(), user.clone()))
        {
            Some(m) => {
                m.role = role;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_group(&self, session: &SessionId, _: &[UserId]) -> Result<(), PortError> {
        self.1.lock().unwrap().remove(session);
        self.0.lock().unwrap().retain(|(s, _), _| s != session);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create_direct(
        &self,
        session: &SessionId,
        a: &UserId,
        b: &UserId,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut map = self.0.lock().unwrap();
        if map.keys().any(|(s, _)| s == session) {
            return Ok(false);
        }
        for u in [a, b] {
            let m = Membership {
                session_id: session.clone(),
                kind: SessionKind::Direct,
                user_id: u.clone(),
                joined_at: at,
                joined_seq: 0,
                role: Role::Member,
                delivered: Watermark::default(),
                read: Watermark::default(),
            };
            map.insert((session.clone(), u.clone()), m);
        }
        Ok(true)
    }

    async fn exists(&self, session: &SessionId) -> Result<bool, PortError> {
        Ok(self.1.lock().unwrap().contains_key(session)
            || self.0.lock().unwrap().keys().any(|(s, _)| s == session))
    }

    async fn membership(
        &self,
        session: &SessionId,
        user: &UserId,
    ) -> Result<Option<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(&(session.clone(), user.clone()))
            .cloned())
    }

    async fn members(&self, session: &SessionId) -> Result<Vec<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|m| &m.session_id == session)
            .cloned()
            .collect())
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Membership>, PortError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .values()
            .filter(|m| &m.user_id == user)
            .cloned()
            .collect())
    }

    async fn leave_all(&self, user: &UserId) -> Result<usize, PortError> {
        let mut map = self.0.lock().unwrap();
        let before = map.len();
        map.retain(|(_, u), _| u != user);
        Ok(before - map.len())
    }

    async fn advance(
        &self,
        session: &SessionId,
        user: &UserId,
        receipt: Receipt,
        seq: u64,
        at: DateTime<Utc>,
    ) -> Result<bool, PortError> {
        let mut map = self.0.lock().unwrap();
        let Some(m) = map.get_mut(&(session.clone(), user.clone())) else {
            return Ok(false);
        };
        if seq <= m.joined_seq {
            // Before the member joined: not theirs to acknowledge.
            return Ok(false);
        }
        let mark = match receipt {
            Receipt::Delivered => &mut m.delivered,
            Receipt::Read => &mut m.read,
            Receipt::Sent => return Ok(false),
        };
        if mark.seq >= seq {
            return Ok(false);
        }
        *mark = Watermark { seq, at: Some(at) };
        Ok(true)
    }
}

/// The first result of a (sender, clientMsgId): msgId, seq, sentAt.
type FirstResult = (String, u64, String);

/// Messages in per-session vectors, with idempotency by (sender, clientMsgId).
#[derive(Default)]
pub struct MemoryMessages {
    sessions: Mutex<HashMap<SessionId, Vec<Message>>>,
    sent: Mutex<HashMap<(UserId, String), FirstResult>>,
    /// Which stored messages asked for inline delivery ([`Draft::inline`]).
    inline: Mutex<std::collections::HashSet<String>>,
    outcomes: Mutex<HashMap<String, InlineOutcome>>,
    /// Each session's disappearing timer, in seconds.
    timers: Mutex<HashMap<SessionId, u32>>,
    /// Each session's floor ([`MessageStore::keep_floor`]).
    floors: Mutex<HashMap<SessionId, u64>>,
}

#[async_trait]
impl DeliveryLog for MemoryMessages {
    async fn record(&self, id: &MsgId, outcome: InlineOutcome) -> Result<(), PortError> {
        self.outcomes
            .lock()
            .unwrap()
            .insert(id.to_string(), outcome);
        Ok(())
    }

    async fn outcome(&self, id: &MsgId) -> Result<Option<InlineOutcome>, PortError> {
        Ok(self.outcomes.lock().unwrap().get(&id.to_string()).copied())
    }
}

#[async_trait]
impl MessageStore for MemoryMessages {
    async fn append(
        &self,
        session: &SessionId,
        draft: &Draft,
        at: DateTime<Utc>,
    ) -> Result<Appended, PortError> {
        let mut sent = self.sent.lock().unwrap();
        let key = (draft.sender.clone(), draft.client_msg_id.clone());
        if let Some((msg_id, seq, sent_at)) = sent.get(&key) {
            return Ok(Appended::Duplicate {
                msg_id: msg_id.clone(),
                seq: *seq,
                sent_at: sent_at.clone(),
            });
        }
        // The timers' lock is held across the write, as `set_timer` holds it: the timer read is
        // the one in force at the number written.
        let timers = self.timers.lock().unwrap();
        let timer = timers.get(session).copied().unwrap_or(0);
        let mut sessions = self.sessions.lock().unwrap();
        let log = sessions.entry(session.clone()).or_default();
        let seq = log.len() as u64 + 1;
        let tail = Tail {
            seq: seq - 1,
            timer,
        };
        let m = draft.message(session, seq, at, tail.expiry(draft, at));
        log.push(m.clone());
        sent.insert(key, (m.msg_id.clone(), seq, m.sent_at.clone()));
        if draft.inline {
            self.inline.lock().unwrap().insert(m.msg_id.clone());
        }
        Ok(Appended::New(Box::new(m)))
    }

    async fn after(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<(Vec<Message>, bool), PortError> {
        let sessions = self.sessions.lock().unwrap();
        let log = sessions.get(session).map(Vec::as_slice).unwrap_or_default();
        let rest: Vec<_> = log.iter().filter(|m| m.seq > after_seq).cloned().collect();
        let more = rest.len() > limit;
        Ok((rest.into_iter().take(limit).collect(), more))
    }

    async fn erase(&self, id: &MsgId) -> Result<bool, PortError> {
        let mut sessions = self.sessions.lock().unwrap();
        let Some(m) = sessions
            .get_mut(&id.session)
            .and_then(|log| log.iter_mut().find(|m| m.seq == id.seq))
        else {
            return Ok(false);
        };
        m.kind = crate::chat::MessageKind::Deleted;
        m.payload.clear();
        m.attachments.clear();
        Ok(true)
    }

    async fn get(&self, id: &MsgId) -> Result<Option<Message>, PortError> {
        let sessions = self.sessions.lock().unwrap();
        Ok(sessions
            .get(&id.session)
            .and_then(|log| log.iter().find(|m| m.seq == id.seq).cloned()))
    }

    async fn last(&self, session: &SessionId) -> Result<Option<Message>, PortError> {
        Ok(self
            .sessions
            .lock()
            .unwrap()
            .get(session)
            .and_then(|log| log.last().cloned()))
    }

    async fn tail(&self, session: &SessionId) -> Result<Tail, PortError> {
        let timer = self.timer(session);
        let sessions = self.sessions.lock().unwrap();
        // Nothing is ever removed here, so the last number is the log's length.
        let seq = sessions.get(session).map_or(0, |log| log.len() as u64);
        Ok(Tail { seq, timer })
    }

    async fn set_timer(
        &self,
        session: &SessionId,
        record: &Draft,
        seconds: u32,
        at: DateTime<Utc>,
    ) -> Result<Message, PortError> {
        // Both under the timers' lock: no message is stored between the record and the change.
        let mut timers = self.timers.lock().unwrap();
        let mut sessions = self.sessions.lock().unwrap();
        let log = sessions.entry(session.clone()).or_default();
        let seq = log.len() as u64 + 1;
        let m = record.message(session, seq, at, None);
        log.push(m.clone());
        timers.insert(session.clone(), seconds);
        if record.inline {
            self.inline.lock().unwrap().insert(m.msg_id.clone());
        }
        Ok(m)
    }

    async fn keep_floor(&self, session: &SessionId, seq: u64) -> Result<(), PortError> {
        // Nothing disappears from memory, so the tail never falls below a used number; the floor
        // is kept only to be looked at ([`MemoryMessages::floor`]).
        let mut floors = self.floors.lock().unwrap();
        let floor = floors.entry(session.clone()).or_default();
        *floor = (*floor).max(seq);
        Ok(())
    }
}

impl MemoryMessages {
    /// The floor kept for a session (0: none), for tests of the stream consumer.
    pub fn floor(&self, session: &SessionId) -> u64 {
        self.floors
            .lock()
            .unwrap()
            .get(session)
            .copied()
            .unwrap_or(0)
    }

    fn timer(&self, session: &SessionId) -> u32 {
        self.timers
            .lock()
            .unwrap()
            .get(session)
            .copied()
            .unwrap_or(0)
    }

    /// Whether a stored message asked for inline delivery (what the stream record carries).
    pub fn is_inline(&self, msg_id: &str) -> bool {
        self.inline.lock().unwrap().contains(msg_id)
    }

    /// Every stored message of a session, in order (for tests that play the stream).
    pub fn all(&self, session: &SessionId) -> Vec<Message> {
        self.sessions
            .lock()
            .unwrap()
            .get(session)
            .cloned()
            .unwrap_or_default()
    }
}
