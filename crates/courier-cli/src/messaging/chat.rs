//! `courier chat`: one conversation, live: what arrives is printed as it comes, with its ticks,
//! and each line typed is sent.

use super::*;

/// One of my messages in the open chat, with the tick shown for it.
pub(super) struct Mine {
    pub(super) text: String,
    pub(super) shown: Receipt,
}

pub(super) fn ticks(s: Receipt) -> &'static str {
    match s {
        Receipt::Sent => "✓",
        Receipt::Delivered => "✓✓",
        Receipt::Read => "✓✓ read",
    }
}

/// The open chat: what is shown, and the read receipts going out.
pub(super) struct ChatView<'a> {
    pub(super) ctx: &'a Ctx<'a>,
    pub(super) client: Client,
    pub(super) session: String,
    /// My messages sent from this chat, by seq.
    pub(super) mine: BTreeMap<u64, Mine>,
    /// The peer's (delivered, read) watermarks as far as we know (a status may come before the
    /// send's reply).
    pub(super) peer: (u64, u64),
    pub(super) acks: tokio::task::JoinSet<Result<bool, ClientError>>,
    pub(super) connected: bool,
    pub(super) synced: bool,
}

/// What the chat loop does next.
pub(super) enum Flow {
    Continue,
    Stop(Result<()>),
}

impl ChatView<'_> {
    pub(super) fn ack_read(&mut self, msg_id: String) {
        let (c, s) = (self.client.clone(), self.session.clone());
        self.acks
            .spawn(async move { c.ack(&s, &msg_id, Receipt::Read).await });
    }

    pub(super) fn on_sent(
        &mut self,
        text: String,
        result: Result<SentMessage, ClientError>,
    ) -> Flow {
        match result {
            Ok(sent) => {
                let me = &self.ctx.me;
                self.ctx.record([HistoryEntry::sent(
                    &self.session,
                    &sent,
                    &me.user_id,
                    &me.device_id,
                    &text,
                )]);
                let shown = if self.peer.1 >= sent.seq {
                    Receipt::Read
                } else if self.peer.0 >= sent.seq {
                    Receipt::Delivered
                } else {
                    Receipt::Sent
                };
                print_line(&format!(
                    "[{}] me: {text} {}",
                    time(&sent.sent_at),
                    ticks(shown)
                ));
                self.mine.insert(sent.seq, Mine { text, shown });
                Flow::Continue
            }
            Err(ClientError::Unauthorized) => {
                eprintln!("not sent: {text}");
                Flow::Stop(Err(refused()))
            }
            Err(ClientError::Crypto(CryptoError::IdentityChanged { user, device, .. })) => {
                eprintln!("not sent: {text}\n{}", identity_warning(&user, &device));
                Flow::Continue
            }
            Err(e) => {
                eprintln!("not sent: {text} ({e})");
                Flow::Continue
            }
        }
    }

    pub(super) fn on_event(&mut self, event: Option<Event>) -> Flow {
        let me = self.ctx.me.user_id.as_str();
        match event {
            Some(Event::Message(m)) if m.session_id == self.session => {
                self.ctx.record([HistoryEntry::shown(&m)]);
                print_line(&format!(
                    "[{}] {}: {}",
                    time(&m.sent_at),
                    self.ctx.who(&m.sender),
                    text_of(&m)
                ));
                if m.sender != me {
                    self.ack_read(m.msg_id);
                }
            }
            Some(Event::Message(m)) => {
                let from = self.ctx.who(&m.sender);
                eprintln!("(new message in session {} from {from})", m.session_id);
            }
            Some(Event::Undecryptable { message: m, reason }) if m.session_id == self.session => {
                print_line(&format!(
                    "[{}] {}: (cannot be decrypted: {reason})",
                    time(&m.sent_at),
                    self.ctx.who(&m.sender),
                ));
            }
            Some(Event::IdentityChanged { user_id, device_id }) => {
                eprintln!("{}", identity_warning(&user_id, &device_id));
            }
            Some(Event::SessionStarted {
                session_id, from, ..
            }) if from != me => {
                eprintln!("({} started session {session_id})", self.ctx.who(&from));
            }
            Some(Event::Status {
                session_id,
                user_id,
                status,
                up_to_seq,
                at,
                ..
            }) if session_id == self.session && user_id != me => {
                self.peer.0 = self.peer.0.max(up_to_seq);
                if status == Receipt::Read {
                    self.peer.1 = self.peer.1.max(up_to_seq);
                }
                let at = at.as_deref().map(time).unwrap_or_default();
                for m in self.mine.range_mut(..=up_to_seq).map(|(_, m)| m) {
                    if m.shown < status {
                        m.shown = status;
                        print_line(&format!("[{at}] me: {} {}", m.text, ticks(status)));
                    }
                }
            }
            Some(Event::Disconnected) => {
                self.connected = false;
                eprintln!("(connection lost; reconnecting)");
            }
            Some(Event::Connected) if !self.connected => {
                self.connected = true;
                eprintln!("(reconnected)");
            }
            Some(Event::Synced) => {
                self.synced = true;
                // Opening the chat reads it: mark everything this device has seen as read
                // (e.g. messages `inbox` showed earlier).
                let read = self
                    .client
                    .known_sessions()
                    .into_iter()
                    .find(|s| s.session_id == self.session)
                    .map_or(0, |s| s.read_seq);
                let unread = self
                    .client
                    .cursors()
                    .get(&self.session)
                    .filter(|c| c.seq > read)
                    .and_then(|c| c.msg_id.clone());
                if let Some(id) = unread {
                    self.ack_read(id);
                }
            }
            Some(Event::Unauthorized) => return Flow::Stop(Err(refused())),
            Some(Event::Error(e)) => {
                // A failed sync is not retried until the next connect: do not wait for it.
                self.synced = true;
                eprintln!("courier: {e}");
            }
            Some(_) => {}
            None => return Flow::Stop(Err(anyhow!("connection closed"))),
        }
        Flow::Continue
    }
}

/// `courier chat`.
pub async fn chat(ctx: &Ctx<'_>, target: Target) -> Result<()> {
    let (client, mut events) = ctx.connect(ctx.config()?).await?;
    let session = ctx.session_for(&client, &target).await?;
    let who = match &target {
        Target::Phone(s) | Target::User(s) | Target::Session(s) => s.clone(),
    };
    eprintln!(
        "Chatting with {who} (session {session}). Type a message and press Enter; Ctrl-D quits."
    );

    // Lines from stdin, read on a thread (stdin may be a pipe or a terminal).
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = line.trim_end_matches(['\n', '\r']).to_owned();
                    if !text.trim().is_empty() && line_tx.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Sends one at a time, in order; results come back on `sent_rx`, which ends after EOF.
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let sender = {
        let client = client.clone();
        let session = session.clone();
        tokio::spawn(async move {
            while let Some(text) = line_rx.recv().await {
                let r = client.send_text(&session, &text).await;
                if sent_tx.send((text, r)).is_err() {
                    break;
                }
            }
        })
    };

    let mut view = ChatView {
        ctx,
        client: client.clone(),
        session: session.clone(),
        mine: BTreeMap::new(),
        peer: (0, 0),
        acks: tokio::task::JoinSet::new(),
        connected: true,
        synced: false,
    };
    // EOF ends the chat once every line is sent and the first sync has shown what was waiting.
    let mut input_done = false;
    let result = loop {
        if input_done && view.synced {
            break Ok(());
        }
        let flow = tokio::select! {
            sent = sent_rx.recv(), if !input_done => match sent {
                Some((text, r)) => view.on_sent(text, r),
                None => {
                    input_done = true;
                    Flow::Continue
                }
            },
            event = events.recv() => view.on_event(event),
        };
        if let Flow::Stop(r) = flow {
            break r;
        }
    };
    sender.abort();
    // Let the read receipts go out before leaving.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while view.acks.join_next().await.is_some() {}
    })
    .await;
    // Only this chat's progress is saved: messages of other sessions stay new for `inbox`.
    let mut progress = Cursors::default();
    if let Some(c) = client.cursors().get(&session) {
        progress.set(&session, c.clone());
    }
    ctx.save_cursors(&progress)?;
    client.close().await;
    result
}

/// A member argument: a user id as is, a phone number looked up.
pub(super) async fn member_id(ctx: &Ctx<'_>, client: &Client, member: &str) -> Result<String> {
    if member == "me" {
        return Ok(ctx.me.user_id.clone());
    }
    if member.starts_with("u_") {
        return Ok(member.to_owned());
    }
    client
        .lookup_user(member)
        .await
        .with_context(|| format!("looking up {member}"))
}
