//! `courier chat`: one conversation, live: what arrives is printed as it comes, with its ticks,
//! and each line typed is sent. Lines starting with `/` are commands: `/reply TEXT` and
//! `/react EMOJI` (alone: remove the reaction) answer the last message from the others,
//! `/edit TEXT` and `/delete` change the last message sent from here, `/timer 7d` sets the
//! chat's disappearing messages (`//` sends a `/`).

use super::*;

/// What the chat sends, in the order typed.
pub(super) enum Outgoing {
    /// A text, reply, reaction or edit.
    Content(Content),
    /// Delete one of my messages for everyone.
    Delete(String),
    /// Set the chat's disappearing timer (seconds).
    Timer(u32),
}

/// The commands, as `/help` shows them.
const HELP: &str = "commands: /reply TEXT, /react EMOJI (alone: remove), /edit TEXT, /delete, \
                    /timer 24h|7d|90d|off, /help; \
                    // sends a line starting with /";

/// How much of a message a reaction or a reply quotes.
const QUOTE: usize = 30;

/// Writes a note to stderr, counted by [`screen`].
macro_rules! note {
    ($($t:tt)*) => { screen::note(&format!($($t)*)) };
}

/// Where the chat writes. In a terminal (stdin, stdout and stderr all one), every line is
/// counted, the lines the user types included, so that a message's ticks are rewritten in place
/// (✓, then ✓✓, then ✓✓ read on the same line); anywhere else (a pipe, a file) a tick that moves
/// is a new line, so that what was written stays as it was.
pub(super) mod screen {
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static LINES: AtomicUsize = AtomicUsize::new(0);
    static TTY: AtomicBool = AtomicBool::new(false);

    /// How far up a line may be and still be rewritten (beyond, it may have scrolled away).
    const REACH: usize = 40;

    pub(crate) fn start() {
        let tty = std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal();
        TTY.store(tty, Ordering::Relaxed);
    }

    /// Prints a line; returns its number.
    pub(crate) fn say(line: &str) -> usize {
        super::print_line(line);
        LINES.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn note(line: &str) {
        eprintln!("{line}");
        LINES.fetch_add(1, Ordering::Relaxed);
    }

    /// The user typed a line (the terminal echoed it).
    pub(crate) fn typed() {
        LINES.fetch_add(1, Ordering::Relaxed);
    }

    /// Rewrites line `at` (from [`say`]) in a terminal; false where it cannot.
    pub(crate) fn rewrite(at: usize, line: &str) -> bool {
        let up = LINES.load(Ordering::Relaxed).saturating_sub(at);
        if !TTY.load(Ordering::Relaxed) || up == 0 || up > REACH {
            return false;
        }
        // Save the cursor, go up, clear the line, write, restore.
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b7\x1b[{up}A\r\x1b[2K{line}\x1b8");
        let _ = out.flush();
        true
    }
}

/// One of my messages in the open chat, with the tick shown for it.
pub(super) struct Mine {
    pub(super) text: String,
    pub(super) shown: Receipt,
    /// Its line as printed, without the tick, and the line's number ([`screen::say`]).
    pub(super) line: (String, usize),
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
    /// The chat as shown: what replies quote, what reactions and edits apply to.
    pub(super) thread: Thread,
    /// The last text from the others (what `/reply` and `/react` answer).
    pub(super) last_theirs: Option<String>,
    /// The last text sent from this chat (what `/edit` and `/delete` change).
    pub(super) last_mine: Option<String>,
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

    /// A typed line: a command, or text to send; `None` when there is nothing to send.
    pub(super) fn outgoing(&self, line: &str) -> Option<Outgoing> {
        let Some(command) = line.strip_prefix('/') else {
            return Some(Outgoing::Content(Content::text(line)));
        };
        if command.starts_with('/') {
            return Some(Outgoing::Content(Content::text(command)));
        }
        let (name, arg) = command.split_once(' ').unwrap_or((command, ""));
        let arg = arg.trim();
        let (theirs, mine) = (self.last_theirs.clone(), self.last_mine.clone());
        let missing = |what: &str| {
            note!("(no {what} in this chat yet)");
            None
        };
        match name {
            "reply" if !arg.is_empty() => match theirs {
                Some(to) => Some(Outgoing::Content(Content::Reply {
                    to,
                    text: arg.to_owned(),
                })),
                None => missing("message from the others"),
            },
            "react" => match theirs {
                Some(to) => Some(Outgoing::Content(Content::Reaction {
                    to,
                    emoji: arg.to_owned(),
                })),
                None => missing("message from the others"),
            },
            "edit" if !arg.is_empty() => match mine {
                Some(to) => Some(Outgoing::Content(Content::Edit {
                    to,
                    text: arg.to_owned(),
                })),
                None => missing("message sent from here"),
            },
            "delete" => match mine {
                Some(id) => Some(Outgoing::Delete(id)),
                None => missing("message sent from here"),
            },
            "timer" if !arg.is_empty() => match super::timer::parse_duration(arg) {
                Ok(seconds) => Some(Outgoing::Timer(seconds)),
                Err(e) => {
                    note!("({e})");
                    None
                }
            },
            _ => {
                note!("({HELP})");
                None
            }
        }
    }

    /// The start of a message's text, quoted; "a message" for one not shown here.
    fn quote(&self, msg_id: &str) -> String {
        match self.thread.get(msg_id) {
            Some(m) if m.deleted => "a deleted message".to_owned(),
            Some(m) => match &m.text {
                Some(t) if t.chars().count() > QUOTE => {
                    format!("\"{}…\"", t.chars().take(QUOTE).collect::<String>())
                }
                Some(t) => format!("\"{t}\""),
                None => "a file".to_owned(),
            },
            None => "a message".to_owned(),
        }
    }

    /// Applies a message's content to the chat and prints what it changed (a reaction to or an
    /// edit of a message, or a new message): `None` if it changed nothing (a stale edit).
    fn content_line(&mut self, m: &Message, content: Content) -> Option<String> {
        let who = self.ctx.who(&m.sender);
        let at = time(&m.sent_at);
        let line = match &content {
            Content::Text { text } => format!("[{at}] {who}: {text}"),
            Content::Reply { to, text } => format!("[{at}] {who} ↪ {}: {text}", self.quote(to)),
            Content::Reaction { to, emoji } if emoji.is_empty() => {
                format!("[{at}] {who} removed their reaction to {}", self.quote(to))
            }
            Content::Reaction { to, emoji } => {
                format!("[{at}] {who} reacted {emoji} to {}", self.quote(to))
            }
            Content::Edit { to, text } => {
                format!("[{at}] {who} edited {}: {text} (edited)", self.quote(to))
            }
        };
        let is_message = matches!(content, Content::Text { .. } | Content::Reply { .. });
        if !self.thread.apply(&m.msg_id, &m.sender, &m.sent_at, content) {
            return None;
        }
        if is_message {
            if m.sender == self.ctx.me.user_id {
                self.last_mine = Some(m.msg_id.clone());
            } else {
                self.last_theirs = Some(m.msg_id.clone());
            }
        }
        Some(line)
    }

    /// A message of the open chat, as shown.
    fn show(&mut self, m: &Message) {
        let line = match (&m.kind, &m.text) {
            (MessageKind::Text, Some(text)) => {
                let content = Content::decode(text);
                self.content_line(m, content)
            }
            (MessageKind::Deleted, _) => {
                self.thread.delete(&m.msg_id, &m.sender, &m.sent_at);
                Some(format!(
                    "[{}] {}: {DELETED}",
                    time(&m.sent_at),
                    self.ctx.who(&m.sender)
                ))
            }
            _ => {
                self.thread.apply_other(&m.msg_id, &m.sender, &m.sent_at);
                if m.sender != self.ctx.me.user_id {
                    self.last_theirs = Some(m.msg_id.clone());
                }
                Some(format!(
                    "[{}] {}: {}",
                    time(&m.sent_at),
                    self.ctx.who(&m.sender),
                    text_of(m)
                ))
            }
        };
        if let Some(line) = line {
            screen::say(&line);
        }
    }

    /// The answer to a deletion typed here.
    pub(super) fn on_deleted(&mut self, msg_id: String, result: Result<(), ClientError>) -> Flow {
        match result {
            Ok(()) => {
                self.ctx.erase(&msg_id);
                if self.thread.delete_known(&msg_id) {
                    screen::say(&format!("me: {DELETED}"));
                }
                if self.last_mine.as_deref() == Some(msg_id.as_str()) {
                    self.last_mine = None;
                }
                Flow::Continue
            }
            Err(ClientError::Unauthorized) => Flow::Stop(Err(refused())),
            Err(e) => {
                note!("not deleted ({e})");
                Flow::Continue
            }
        }
    }

    pub(super) fn on_sent(
        &mut self,
        content: Content,
        result: Result<SentMessage, ClientError>,
    ) -> Flow {
        let text = content.encode();
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
                let mine = Message {
                    msg_id: sent.msg_id.clone(),
                    session_id: self.session.clone(),
                    seq: sent.seq,
                    sender: me.user_id.clone(),
                    sender_device: me.device_id.clone(),
                    client_msg_id: None,
                    kind: MessageKind::Text,
                    payload: String::new(),
                    attachments: Vec::new(),
                    sent_at: sent.sent_at.clone(),
                    expires_at: sent.expires_at.clone(),
                    text: Some(text.clone()),
                };
                let is_message = matches!(content, Content::Text { .. } | Content::Reply { .. });
                let Some(line) = self.content_line(&mine, content) else {
                    note!("(sent, but it changes nothing here: too late to edit?)");
                    return Flow::Continue;
                };
                if !is_message {
                    screen::say(&line);
                    return Flow::Continue;
                }
                let shown = if self.peer.1 >= sent.seq {
                    Receipt::Read
                } else if self.peer.0 >= sent.seq {
                    Receipt::Delivered
                } else {
                    Receipt::Sent
                };
                let at = screen::say(&format!("{line} {}", ticks(shown)));
                let text = line.split_once(": ").map_or(line.as_str(), |(_, t)| t);
                self.mine.insert(
                    sent.seq,
                    Mine {
                        text: text.to_owned(),
                        shown,
                        line: (line.clone(), at),
                    },
                );
                Flow::Continue
            }
            Err(ClientError::Unauthorized) => {
                note!("not sent: {}", shown_text(&text));
                Flow::Stop(Err(refused()))
            }
            Err(ClientError::Crypto(CryptoError::IdentityChanged { user, device, .. })) => {
                note!(
                    "not sent: {}\n{}",
                    shown_text(&text),
                    identity_warning(&user, &device)
                );
                Flow::Continue
            }
            Err(e) => {
                note!("not sent: {} ({e})", shown_text(&text));
                Flow::Continue
            }
        }
    }

    pub(super) fn on_event(&mut self, event: Option<Event>) -> Flow {
        let me = self.ctx.me.user_id.as_str();
        match event {
            Some(Event::Message(m)) if m.session_id == self.session => {
                self.ctx.record([HistoryEntry::shown(&m)]);
                self.show(&m);
                if m.sender != me {
                    self.ack_read(m.msg_id);
                }
            }
            Some(Event::MessageDeleted {
                session_id,
                msg_id,
                by,
                message,
            }) if session_id == self.session => {
                self.ctx.erase(&msg_id);
                if self.thread.delete_known(&msg_id) {
                    let at = message
                        .as_ref()
                        .map(|m| time(&m.sent_at))
                        .unwrap_or_default();
                    screen::say(&format!("[{at}] {}: {DELETED}", self.ctx.who(&by)));
                }
                for id in [&mut self.last_mine, &mut self.last_theirs] {
                    if id.as_deref() == Some(msg_id.as_str()) {
                        *id = None;
                    }
                }
                if let Some(m) = message
                    && by != me
                {
                    self.ack_read(m.msg_id);
                }
            }
            Some(Event::DisappearingTimer {
                session_id,
                seconds,
                by,
                message,
            }) if session_id == self.session => {
                screen::say(&super::timer::notice(&self.ctx.who(&by), seconds));
                if let Some(m) = message
                    && by != me
                {
                    self.ack_read(m.msg_id);
                }
            }
            Some(Event::Typing {
                session_id,
                user_id,
                typing: true,
            }) if session_id == self.session && user_id != me => {
                note!("({} is typing…)", self.ctx.who(&user_id));
            }
            Some(Event::Message(m)) => {
                let from = self.ctx.who(&m.sender);
                note!("(new message in session {} from {from})", m.session_id);
            }
            Some(Event::Undecryptable { message: m, reason }) if m.session_id == self.session => {
                screen::say(&format!(
                    "[{}] {}: (cannot be decrypted: {reason})",
                    time(&m.sent_at),
                    self.ctx.who(&m.sender),
                ));
            }
            Some(Event::IdentityChanged { user_id, device_id }) => {
                note!("{}", identity_warning(&user_id, &device_id));
            }
            Some(Event::SessionStarted {
                session_id, from, ..
            }) if from != me => {
                note!("({} started session {session_id})", self.ctx.who(&from));
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
                        let (line, n) = &m.line;
                        if !screen::rewrite(*n, &format!("{line} {}", ticks(status))) {
                            screen::say(&format!("[{at}] me: {} {}", m.text, ticks(status)));
                        }
                    }
                }
            }
            Some(Event::Disconnected) => {
                self.connected = false;
                note!("(connection lost; reconnecting)");
            }
            Some(Event::Connected) if !self.connected => {
                self.connected = true;
                note!("(reconnected)");
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
                note!("courier: {e}");
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
    let members = client.members(&session).await.unwrap_or_default();
    ctx.learn(&client, members.iter().map(String::as_str)).await;
    let others: Vec<String> = members
        .iter()
        .filter(|m| **m != ctx.me.user_id)
        .map(|m| ctx.who(m))
        .collect();
    let who = match (&target, others.is_empty()) {
        (Target::Phone(s) | Target::User(s) | Target::Session(s), true) => s.clone(),
        (_, false) => others.join(", "),
    };
    note!("Chatting with {who} (session {session}). Type a message and press Enter; Ctrl-D quits.");

    screen::start();
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
                    screen::typed();
                    let text = line.trim_end_matches(['\n', '\r']).to_owned();
                    if !text.trim().is_empty() && line_tx.send(text).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Sends one at a time, in order; results come back on `sent_rx`, which ends after EOF.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    let sender = {
        let client = client.clone();
        let session = session.clone();
        tokio::spawn(async move {
            while let Some(out) = out_rx.recv().await {
                let done = match out {
                    Outgoing::Content(c) => {
                        let r = client.send_rich(&session, &c).await;
                        Sent::Content(c, r)
                    }
                    Outgoing::Delete(id) => {
                        let r = client.delete_message(&session, &id).await;
                        Sent::Delete(id, r)
                    }
                    Outgoing::Timer(seconds) => {
                        Sent::Timer(client.set_disappearing_timer(&session, seconds).await)
                    }
                };
                if sent_tx.send(done).is_err() {
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
        thread: Thread::new(),
        last_theirs: None,
        last_mine: None,
    };
    let mut out_tx = Some(out_tx);
    // One line at a time: `/edit` and `/delete` name the last message sent, so a line is read
    // only once the one before it was answered.
    let mut in_flight = false;
    // EOF ends the chat once every line is sent and the first sync has shown what was waiting.
    let mut input_done = false;
    let result = loop {
        if input_done && view.synced {
            break Ok(());
        }
        let flow = tokio::select! {
            // Typed lines become what to send with the chat as it is shown now; EOF closes the
            // queue, and `sent_rx` ends once everything in it was sent.
            // Not before the first sync: `/reply` and `/react` answer what it shows.
            line = line_rx.recv(), if out_tx.is_some() && view.synced && !in_flight => {
                match line {
                    Some(line) => {
                        if let (Some(out), Some(tx)) = (view.outgoing(&line), &out_tx) {
                            in_flight = tx.send(out).is_ok();
                        }
                    }
                    None => out_tx = None,
                }
                Flow::Continue
            }
            sent = sent_rx.recv(), if !input_done => match sent {
                Some(Sent::Content(c, r)) => {
                    in_flight = false;
                    view.on_sent(c, r)
                }
                Some(Sent::Delete(id, r)) => {
                    in_flight = false;
                    view.on_deleted(id, r)
                }
                Some(Sent::Timer(r)) => {
                    in_flight = false;
                    match r {
                        Ok(now) => {
                            screen::say(&super::timer::notice("me", now));
                        }
                        Err(e) => note!("(timer not changed: {e})"),
                    }
                    Flow::Continue
                }
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

/// What the sending task did with one [`Outgoing`].
enum Sent {
    Content(Content, Result<SentMessage, ClientError>),
    Delete(String, Result<(), ClientError>),
    Timer(Result<u32, ClientError>),
}

/// A plaintext as the user would recognise it (a reply or an edit by its text).
fn shown_text(plaintext: &str) -> String {
    match Content::decode(plaintext) {
        Content::Text { text } | Content::Reply { text, .. } | Content::Edit { text, .. } => text,
        Content::Reaction { emoji, .. } => format!("reaction {emoji}"),
    }
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
