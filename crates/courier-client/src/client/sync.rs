//! What the driver does with a connection: publishing keys, syncing sessions and the device
//! queue, and turning frames into events (decrypted when end-to-end encryption is on).

use super::*;
use crate::history_bundle::{self, ReceivedOffer};

pub(super) fn open_e2ee(config: &ClientConfig) -> Result<Option<Arc<E2ee>>, ClientError> {
    let Some(enc) = &config.encryption else {
        return Ok(None);
    };
    E2ee::open(&enc.dir, &enc.user_id, &enc.device_id)
        .map(|e| Some(Arc::new(e)))
        .map_err(|e| ClientError::Store(e.to_string()))
}

/// What a message turns into once read: the message with its text, nothing yet (held for its
/// key), or an undecryptable notice.
pub(super) fn reveal(e2ee: Option<&E2ee>, events: Vec<Event>) -> (Vec<Event>, bool) {
    let mut out = Vec::with_capacity(events.len());
    let mut held = false;
    for event in events {
        let Event::Message(mut m) = event else {
            out.push(event);
            continue;
        };
        match e2ee {
            None => {
                if matches!(m.kind, MessageKind::Text | MessageKind::Media) {
                    m.text = crate::payload::decode(&m.payload);
                }
                out.push(Event::Message(m));
            }
            Some(e2ee) => match e2ee.decrypt(&m) {
                Decrypted::Text(t) => {
                    m.text = Some(t);
                    out.push(Event::Message(m));
                }
                Decrypted::NotEncrypted => out.push(Event::Message(m)),
                Decrypted::Held => held = true,
                Decrypted::Failed(reason) => out.push(Event::Undecryptable { message: m, reason }),
            },
        }
    }
    (out, held)
}

/// The events for messages a room key released.
pub(super) fn released(list: Vec<(Message, Decrypted)>) -> Vec<Event> {
    list.into_iter()
        .filter_map(|(mut m, d)| match d {
            Decrypted::Text(t) => {
                m.text = Some(t);
                Some(Event::Message(m))
            }
            Decrypted::NotEncrypted => Some(Event::Message(m)),
            Decrypted::Held => None,
            Decrypted::Failed(reason) => Some(Event::Undecryptable { message: m, reason }),
        })
        .collect()
}

impl Inner {
    pub(super) fn emit(&self, events: Vec<Event>) {
        let st = self.state.lock().unwrap();
        emit(&st.events, events);
    }

    /// Emits what the tracker let through, decrypted; returns whether a message was held for
    /// its key.
    pub(super) fn emit_revealed(&self, st: &State, events: Vec<Event>) -> bool {
        let (events, held) = reveal(self.e2ee.as_deref(), events);
        emit(&st.events, events);
        held
    }

    /// Offers a message and emits what it produces; returns (cursor moved, gap, held).
    pub(super) fn offer(&self, m: &Message, event: Event, origin: Origin) -> (bool, bool, bool) {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let out = st.tracker.offer(m, event, origin);
        let held = self.emit_revealed(st, out.emit);
        (out.advanced, out.gap, held)
    }

    /// Publishes this device's keys (once per connection); sends wait for it.
    pub(super) async fn publish_keys(&self, session: &Arc<Session>) {
        let Some(e2ee) = &self.e2ee else {
            self.published.send_replace(true);
            return;
        };
        let c = OnConnection {
            inner: self,
            session,
        };
        if let Err(e) = e2ee.publish_keys(&c).await {
            self.emit(vec![Event::Error(format!("publishing keys failed: {e}"))]);
        }
        self.published.send_replace(true);
    }

    /// Handles one device message; returns whether it may be acknowledged.
    pub(super) async fn on_device_message(
        &self,
        c: &impl Caller,
        dm: &DeviceMessage,
    ) -> Result<bool, ClientError> {
        let Some(e2ee) = &self.e2ee else {
            self.emit(vec![Event::DeviceMessage(dm.clone())]);
            return Ok(false);
        };
        let received = e2ee.receive_device_message(c, dm).await;
        for offer in e2ee.take_history_offers() {
            self.import_history(c, offer).await;
        }
        match received {
            Ok(None) => Ok(true),
            Ok(Some(list)) => {
                let events = released(list);
                if !events.is_empty() {
                    let mut st = self.state.lock().unwrap();
                    for e in &events {
                        if let Event::Message(m) = e {
                            st.reported.remove(&m.msg_id);
                        }
                    }
                    emit(&st.events, events);
                }
                Ok(true)
            }
            Err(ClientError::Crypto(CryptoError::IdentityChanged { user, device, .. })) => {
                self.emit(vec![Event::IdentityChanged {
                    user_id: user,
                    device_id: device,
                }]);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Imports a history bundle from the primary device into this device's history (beside
    /// its crypto state). A bundle that cannot be fetched or opened is reported and dropped
    /// (the history is left as it was); the primary can send another.
    async fn import_history(&self, c: &impl Caller, received: ReceivedOffer) {
        let Some(enc) = &self.config.encryption else {
            return;
        };
        let event = match history_bundle::import(c, &received.offer, &enc.user_id, &enc.dir).await {
            Ok(done) => Event::HistorySynced {
                from_device: received.sender_device,
                messages: done.messages,
                chats: done.chats,
                added: done.added,
            },
            Err(e) => Event::Error(format!("history from the primary device refused: {e}")),
        };
        self.emit(vec![event]);
    }

    /// Reads and handles this device's whole queue, acknowledging what was handled.
    pub(super) async fn drain_device_queue(
        &self,
        session: &Arc<Session>,
    ) -> Result<(), ClientError> {
        if self.e2ee.is_none() {
            return Ok(());
        }
        let c = OnConnection {
            inner: self,
            session,
        };
        loop {
            let page = e2ee::read_device_messages(&c, Some(100)).await?;
            let mut acks = Vec::new();
            for dm in &page.messages {
                if self.on_device_message(&c, dm).await? {
                    acks.push(dm.id.clone());
                }
            }
            if !acks.is_empty() {
                e2ee::ack_device_messages(&c, &acks).await?;
            }
            if !page.has_more || acks.is_empty() {
                return Ok(());
            }
        }
    }

    /// After the device queue was read: every message still held for its key is reported
    /// as undecryptable (once; it is still emitted if the key comes later).
    pub(super) fn report_held(&self) {
        let Some(e2ee) = &self.e2ee else { return };
        let held = e2ee.held();
        let mut st = self.state.lock().unwrap();
        let mut events = Vec::new();
        for m in held {
            if st.reported.insert(m.msg_id.clone()) {
                events.push(Event::Undecryptable {
                    message: m,
                    reason: super::ROOM_KEY_PENDING.into(),
                });
            }
        }
        emit(&st.events, events);
    }

    /// Acknowledges `delivered` up to the session's cursor, in the background.
    pub(super) fn ack_cursor(self: &Arc<Self>, session_id: &str) {
        if !self.config.auto_ack_delivered {
            return;
        }
        let Some(msg_id) = self.cursor_msg_id(session_id) else {
            return;
        };
        let Conn::Up(session) = self.conn.borrow().clone() else {
            return;
        };
        let req = protocol::ack(session_id, &msg_id, Receipt::Delivered);
        let timeout = self.config.request_timeout;
        tokio::spawn(async move {
            if let Err(e) = session
                .request_with_timeout(req.action, req.params, timeout)
                .await
            {
                tracing::debug!("ack delivered failed: {e}");
            }
        });
    }

    pub(super) fn cursor_msg_id(&self, session_id: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        st.tracker.cursors.get(session_id)?.msg_id.clone()
    }

    pub(super) async fn request(
        &self,
        session: &Arc<Session>,
        req: Request,
    ) -> Result<Value, ClientError> {
        let r = session
            .request_with_timeout(req.action, req.params, self.config.request_timeout)
            .await;
        if matches!(r, Err(ClientError::Timeout)) {
            check_alive(session.clone());
        }
        r
    }

    /// Catches up every session (and first and last, the device queue: room keys).
    pub(super) async fn sync_all(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        self.drain_device_queue(session).await?;
        self.sync_sessions(session).await?;
        self.drain_device_queue(session).await?;
        self.report_held();
        Ok(())
    }

    pub(super) async fn sync_sessions(&self, session: &Arc<Session>) -> Result<(), ClientError> {
        let sessions = protocol::all_sessions(|req| self.request(session, req)).await?;
        {
            let mut st = self.state.lock().unwrap();
            st.sessions = sessions
                .iter()
                .map(|s| (s.session_id.clone(), s.clone()))
                .collect();
        }
        for s in &sessions {
            let seq = self
                .state
                .lock()
                .unwrap()
                .tracker
                .cursors
                .seq(&s.session_id);
            if s.last_seq > seq {
                self.read_session(session, &s.session_id).await?;
            }
            if self.config.auto_ack_delivered {
                let cursor = {
                    let st = self.state.lock().unwrap();
                    st.tracker.cursors.get(&s.session_id).cloned()
                };
                if let Some(msg_id) = cursor
                    .filter(|c| c.seq > s.delivered_seq)
                    .and_then(|c| c.msg_id)
                {
                    let req = protocol::ack(&s.session_id, &msg_id, Receipt::Delivered);
                    self.request(session, req).await?;
                }
            }
        }
        Ok(())
    }

    /// Reads a session from its cursor to the end.
    pub(super) async fn read_session(
        &self,
        session: &Arc<Session>,
        session_id: &str,
    ) -> Result<(), ClientError> {
        loop {
            let (seq, after) = {
                let st = self.state.lock().unwrap();
                let c = st.tracker.cursors.get(session_id);
                (c.map_or(0, |c| c.seq), c.and_then(|c| c.msg_id.clone()))
            };
            let req = protocol::read_new_messages(
                session_id,
                after.as_deref(),
                Some(self.config.page_size),
            );
            let page: protocol::MessagesPage = protocol::parse(self.request(session, req).await?)?;
            for m in &page.messages {
                if m.session_id != session_id {
                    continue;
                }
                self.offer(m, Event::for_message(m.clone()), Origin::Read);
            }
            if let Some(to) = page.skipped_to.as_deref()
                && let Some((sid, n)) = to.rsplit_once('.')
                && sid == session_id
                && let Ok(n) = n.parse::<u64>()
            {
                let mut st = self.state.lock().unwrap();
                let st = &mut *st;
                let out = st.tracker.skip_to(session_id, n, to);
                self.emit_revealed(st, out.emit);
            }
            let moved = self.state.lock().unwrap().tracker.cursors.seq(session_id) > seq;
            if !page.has_more || !moved {
                return Ok(());
            }
        }
    }

    /// Handles one unsolicited frame.
    pub(super) async fn on_frame(self: &Arc<Self>, session: &Arc<Session>, frame: Value) {
        let event = Event::from_frame(frame);
        if let (Event::DeviceMessage(dm), Some(_)) = (&event, &self.e2ee) {
            let c = OnConnection {
                inner: self,
                session,
            };
            match self.on_device_message(&c, dm).await {
                Ok(true) => {
                    if let Err(e) =
                        e2ee::ack_device_messages(&c, std::slice::from_ref(&dm.id)).await
                    {
                        tracing::debug!("ackDeviceMessages failed: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("handling a device message failed: {e}"),
            }
            return;
        }
        let message = match &event {
            Event::Message(m) => Some(m.clone()),
            Event::SessionStarted {
                message: Some(m), ..
            }
            | Event::MessageDeleted {
                message: Some(m), ..
            }
            | Event::DisappearingTimer {
                message: Some(m), ..
            } => Some(m.clone()),
            _ => None,
        };
        let Some(m) = message else {
            self.emit(vec![event]);
            return;
        };
        let event = match event {
            Event::Message(m) => Event::for_message(m),
            other => other,
        };
        let (advanced, gap, held) = self.offer(&m, event, Origin::Live);
        let mut advanced = advanced;
        if gap {
            match self.read_session(session, &m.session_id).await {
                Ok(()) => advanced = true,
                Err(e) => tracing::debug!("reading a gap failed: {e}"),
            }
        }
        if held || gap {
            // The room key is queued before the message is sent: read the queue now.
            match self.drain_device_queue(session).await {
                Ok(()) => self.report_held(),
                Err(e) => tracing::debug!("reading the device queue failed: {e}"),
            }
        }
        if advanced {
            self.ack_cursor(&m.session_id);
        }
    }
}

pub(super) fn emit(tx: &Option<mpsc::UnboundedSender<Event>>, events: Vec<Event>) {
    if let Some(tx) = tx {
        for e in events {
            let _ = tx.send(e);
        }
    }
}

/// After a timeout: probe the connection, and drop it if it does not answer (so the client
/// reconnects instead of waiting on a dead socket).
pub(super) fn check_alive(session: Arc<Session>) {
    tokio::spawn(async move {
        if !session.probe(Duration::from_secs(5)).await {
            tracing::debug!("connection did not answer a ping; dropping it");
            session.abort();
        }
    });
}
