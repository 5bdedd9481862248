//! `send`, `inbox` and `chat`: the messaging commands, on the SDK's resilient `Client`, always
//! end-to-end encrypted (the device's crypto state in `crypto/` beside the credentials).
//!
//! A contact whose identity key changed is shown as a warning; nothing is sent to it and its
//! messages are not shown until the user checks and accepts it with
//! `courier verify-contact <contact> --accept`.
//!
//! What this device has seen is kept in `state.json` (mode 0600) as the client's cursors, so
//! `inbox` shows each message once across runs; `send` records its own message there, so it is
//! not shown back as new.

use crate::{Store, Stored};
use anyhow::{Context, Result, anyhow, bail};
use courier_client::history::{HistoryEntry, HistoryStore};
use courier_client::{
    Client, ClientConfig, ClientError, CryptoError, Cursors, Encryption, Event, Message,
    MessageKind, Receipt, SentMessage, client::Events,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;
use tokio::sync::mpsc;

const STATE: &str = "state.json";

/// How long a command keeps retrying a request while the server is unreachable.
const RETRY_FOR: Duration = Duration::from_secs(30);

/// What is kept between runs.
#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct State {
    #[serde(default)]
    pub(crate) cursors: Cursors,
}

/// Who to talk to.
pub enum Target {
    /// The direct chat with the account behind this number.
    Phone(String),
    /// The direct chat with a user id.
    User(String),
    /// A session by id.
    Session(String),
}

/// What every messaging command needs.
pub struct Ctx<'a> {
    pub(crate) store: &'a Store,
    ws_url: String,
    pub(crate) me: Stored,
}

impl<'a> Ctx<'a> {
    pub fn new(store: &'a Store, ws_url: &str) -> Result<Self> {
        Ok(Self {
            store,
            ws_url: ws_url.to_owned(),
            me: store.credentials()?,
        })
    }

    pub(crate) fn state(&self) -> Result<State> {
        Ok(self.store.read::<State>(STATE)?.unwrap_or_default())
    }

    /// Folds `cursors` into the saved state (re-read, so a concurrent run's progress is kept).
    pub(crate) fn save_cursors(&self, cursors: &Cursors) -> Result<()> {
        let mut state = self.state()?;
        state.cursors.merge(cursors);
        self.store.write(STATE, &state)
    }

    pub(crate) fn config(&self) -> Result<ClientConfig> {
        let mut c = ClientConfig::new(&self.ws_url, &self.me.api_key);
        c.retry_deadline = Some(RETRY_FOR);
        c.cursors = self.state()?.cursors;
        c.encryption = Some(Encryption {
            dir: self.store.crypto_dir(),
            user_id: self.me.user_id.clone(),
            device_id: self.me.device_id.clone(),
        });
        Ok(c)
    }

    pub(crate) async fn connect(&self, config: ClientConfig) -> Result<(Client, Events)> {
        Client::connect(config).await.map_err(|e| match e {
            ClientError::Unauthorized => refused(),
            other => anyhow!("server: {other}"),
        })
    }

    /// The session id for `target`.
    pub(crate) async fn session_for(&self, client: &Client, target: &Target) -> Result<String> {
        match target {
            Target::Session(s) => Ok(s.clone()),
            Target::User(peer) => Ok(client
                .initiate_direct_chat(peer, None)
                .await
                .context("starting the chat")?
                .session_id),
            Target::Phone(phone) => {
                let peer = client
                    .lookup_user(phone)
                    .await
                    .with_context(|| format!("looking up {phone}"))?;
                let chat = client
                    .initiate_direct_chat(&peer, None)
                    .await
                    .context("starting the chat")?;
                Ok(chat.session_id)
            }
        }
    }

    /// Adds messages to this device's history (`crypto/history.state`, encrypted at rest).
    /// A failure is reported, not fatal: the message itself was sent or shown.
    pub(crate) fn record(&self, entries: impl IntoIterator<Item = HistoryEntry>) {
        let result = HistoryStore::open(self.store.crypto_dir()).and_then(|h| h.record(entries));
        if let Err(e) = result {
            eprintln!("courier: could not record the history: {e}");
        }
    }

    pub(crate) fn who(&self, user_id: &str) -> String {
        if user_id == self.me.user_id {
            "me".to_owned()
        } else {
            user_id.to_owned()
        }
    }
}

fn refused() -> anyhow::Error {
    anyhow!("server: key refused (revoked, or the account moved to another phone)")
}

/// The warning for a contact whose identity key changed.
pub(crate) fn identity_warning(user: &str, device: &str) -> String {
    format!(
        "WARNING: the identity of {user} changed (device {device} has a new key: a new phone, \
         or someone else). Nothing is sent to it and its messages are not shown until you \
         compare safety numbers with `courier verify-contact {user}` and accept it with \
         `courier verify-contact {user} --accept`."
    )
}

/// What a failed send says.
pub(crate) fn not_sent(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Unauthorized => refused(),
        ClientError::Crypto(CryptoError::IdentityChanged { user, device, .. }) => {
            anyhow!("not sent: {}", identity_warning(&user, &device))
        }
        other => anyhow!("not sent: {other}"),
    }
}

/// `2026-11-27T12:00:00.000Z` → `2026-11-27 12:00:00` (UTC).
pub(crate) fn date_time(at: &str) -> String {
    at.get(..19).unwrap_or(at).replacen('T', " ", 1)
}

/// `2026-11-27T12:00:00.000Z` → `12:00:00` (UTC).
fn time(at: &str) -> String {
    at.get(11..19).unwrap_or(at).to_owned()
}

/// The text of a message, as shown.
fn text_of(m: &Message) -> String {
    match m.kind {
        MessageKind::Text => m
            .text
            .clone()
            .unwrap_or_else(|| "(cannot be read)".to_owned()),
        MessageKind::System => match serde_json::from_str::<serde_json::Value>(&m.payload) {
            // A group change the server wrote into the session.
            Ok(c) => {
                let (by, user) = (
                    c["by"].as_str().unwrap_or("?"),
                    c["userId"].as_str().unwrap_or("?"),
                );
                match c["update"].as_str().unwrap_or("") {
                    "created" => format!("[group] {by} created the group"),
                    "memberAdded" => format!("[group] {by} added {user}"),
                    "memberRemoved" if by == user => format!("[group] {user} left"),
                    "memberRemoved" => format!("[group] {by} removed {user}"),
                    "promoted" => format!("[group] {user} is now an admin"),
                    other => format!("[group] {other}"),
                }
            }
            Err(_) => "(system message)".to_owned(),
        },
        MessageKind::Media => match courier_client::media::MediaPayload::from_message(m) {
            Some(f) => {
                let name = f.file_name.as_deref().unwrap_or("file");
                match &f.caption {
                    Some(c) => format!("[file {name}, {} bytes] {c}", f.size),
                    None => format!("[file {name}, {} bytes]", f.size),
                }
            }
            None => "(cannot be read)".to_owned(),
        },
        ref other => format!("({other} message)"),
    }
}

pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `courier send`.
pub async fn send(ctx: &Ctx<'_>, target: Target, text: &str, as_json: bool) -> Result<()> {
    if text.is_empty() {
        bail!("nothing to send");
    }
    let mut config = ctx.config()?;
    // Only send: reading (and acknowledging) is for `inbox` and `chat`.
    config.sync_on_connect = false;
    config.auto_ack_delivered = false;
    let (client, _events) = ctx.connect(config).await?;
    let session = ctx.session_for(&client, &target).await?;
    let sent = client.send_text(&session, text).await.map_err(not_sent)?;
    ctx.record([HistoryEntry::sent(
        &session,
        &sent,
        &ctx.me.user_id,
        &ctx.me.device_id,
        text,
    )]);
    let mut mine = Cursors::default();
    mine.mark_seen(&session, sent.seq, &sent.msg_id);
    ctx.save_cursors(&mine)?;
    client.close().await;
    if as_json {
        print_line(
            &json!({
                "sessionId": session, "msgId": sent.msg_id, "seq": sent.seq, "sentAt": sent.sent_at,
            })
            .to_string(),
        );
    } else {
        print_line(&format!(
            "sent msgId={} seq={} session={}",
            sent.msg_id, sent.seq, session
        ));
    }
    Ok(())
}

/// `courier inbox`.
/// Received files are saved into `save_dir` (default `<config dir>/downloads`).
pub async fn inbox(
    ctx: &Ctx<'_>,
    as_json: bool,
    timeout: Duration,
    save_dir: Option<std::path::PathBuf>,
) -> Result<()> {
    let save_dir = save_dir.unwrap_or_else(|| ctx.store.0.join("downloads"));
    let (client, mut events) = ctx.connect(ctx.config()?).await?;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut count = 0usize;
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = &mut deadline => {
                ctx.save_cursors(&client.cursors())?;
                bail!("timed out before the inbox was synced ({count} messages shown)");
            }
        };
        match event {
            Some(Event::Message(m)) => {
                count += 1;
                let file = courier_client::media::MediaPayload::from_message(&m);
                let saved = match &file {
                    Some(f) => Some(crate::downloads::save(&client, f, &save_dir).await),
                    None => None,
                };
                ctx.record([HistoryEntry::shown(&m)]);
                if as_json {
                    let mut v = serde_json::to_value(&m)?;
                    v["event"] = json!("message");
                    if let (MessageKind::Text, Some(t)) = (&m.kind, &m.text) {
                        v["text"] = json!(t);
                    }
                    if let Some(f) = &file {
                        v["file"] = json!({
                            "mediaId": f.media_id, "fileName": f.file_name, "size": f.size,
                            "contentType": f.content_type, "caption": f.caption,
                        });
                    }
                    match &saved {
                        Some(Ok(path)) => v["savedTo"] = json!(path),
                        Some(Err(e)) => v["saveError"] = json!(format!("{e:#}")),
                        None => {}
                    }
                    print_line(&v.to_string());
                } else {
                    print_line(&format!(
                        "[{}] {} {}: {}",
                        m.session_id,
                        date_time(&m.sent_at),
                        ctx.who(&m.sender),
                        text_of(&m)
                    ));
                    match &saved {
                        Some(Ok(path)) => print_line(&format!("  saved to {}", path.display())),
                        Some(Err(e)) => eprintln!("  not saved: {e:#}"),
                        None => {}
                    }
                }
            }
            Some(Event::SessionStarted {
                session_id,
                from,
                message,
                ..
            }) => {
                let at = message.as_ref().map(|m| m.sent_at.as_str()).unwrap_or("");
                if as_json {
                    print_line(
                        &json!({"event": "sessionStarted", "sessionId": session_id, "from": from,
                                "msgId": message.as_ref().map(|m| &m.msg_id), "sentAt": at})
                        .to_string(),
                    );
                } else {
                    print_line(&format!(
                        "[{session_id}] {} {} started the chat",
                        date_time(at),
                        ctx.who(&from)
                    ));
                }
            }
            Some(Event::Undecryptable { message: m, reason }) => {
                if as_json {
                    print_line(
                        &json!({"event": "undecryptable", "sessionId": m.session_id,
                                "msgId": m.msg_id, "sender": m.sender, "reason": reason})
                        .to_string(),
                    );
                } else {
                    print_line(&format!(
                        "[{}] {} {}: (cannot be decrypted: {reason})",
                        m.session_id,
                        date_time(&m.sent_at),
                        ctx.who(&m.sender),
                    ));
                }
            }
            Some(Event::IdentityChanged { user_id, device_id }) => {
                eprintln!("{}", identity_warning(&user_id, &device_id));
            }
            Some(Event::Synced) => break,
            Some(Event::Unauthorized) => bail!(refused()),
            Some(Event::Error(e)) => {
                ctx.save_cursors(&client.cursors())?;
                bail!("{e}");
            }
            Some(_) => {}
            None => bail!("connection closed"),
        }
    }
    ctx.save_cursors(&client.cursors())?;
    client.close().await;
    if !as_json && count == 0 {
        eprintln!("No new messages.");
    }
    Ok(())
}

/// One of my messages in the open chat, with the tick shown for it.
struct Mine {
    text: String,
    shown: Receipt,
}

fn ticks(s: Receipt) -> &'static str {
    match s {
        Receipt::Sent => "✓",
        Receipt::Delivered => "✓✓",
        Receipt::Read => "✓✓ read",
    }
}

/// The open chat: what is shown, and the read receipts going out.
struct ChatView<'a> {
    ctx: &'a Ctx<'a>,
    client: Client,
    session: String,
    /// My messages sent from this chat, by seq.
    mine: BTreeMap<u64, Mine>,
    /// The peer's (delivered, read) watermarks as far as we know (a status may come before the
    /// send's reply).
    peer: (u64, u64),
    acks: tokio::task::JoinSet<Result<bool, ClientError>>,
    connected: bool,
    synced: bool,
}

/// What the chat loop does next.
enum Flow {
    Continue,
    Stop(Result<()>),
}

impl ChatView<'_> {
    fn ack_read(&mut self, msg_id: String) {
        let (c, s) = (self.client.clone(), self.session.clone());
        self.acks
            .spawn(async move { c.ack(&s, &msg_id, Receipt::Read).await });
    }

    fn on_sent(&mut self, text: String, result: Result<SentMessage, ClientError>) -> Flow {
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

    fn on_event(&mut self, event: Option<Event>) -> Flow {
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
async fn member_id(ctx: &Ctx<'_>, client: &Client, member: &str) -> Result<String> {
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

/// `courier group ...`.
pub async fn group(ctx: &Ctx<'_>, command: crate::GroupCommand) -> Result<()> {
    use crate::GroupCommand as G;
    use courier_client::protocol::GroupAction;
    let (client, _events) = ctx.connect(ctx.config()?).await?;
    let client = &client;
    let one = |action: GroupAction, group: String, member: String| async move {
        let user = member_id(ctx, client, &member).await?;
        let r = client
            .group_member(action, &group, &user)
            .await
            .with_context(|| format!("{} {member}", action.name()))?;
        anyhow::Ok(r)
    };
    match command {
        G::Create {
            name,
            members,
            description,
        } => {
            let mut ids = Vec::with_capacity(members.len());
            for m in &members {
                ids.push(member_id(ctx, client, m).await?);
            }
            let id = client
                .create_group(&name, description.as_deref(), &ids)
                .await
                .context("creating the group")?;
            print_line(&id);
        }
        G::Add { group, member } => {
            let r = one(GroupAction::Add, group, member).await?;
            print_line(if r["added"] == true {
                "added"
            } else {
                "already a member"
            });
        }
        G::Remove { group, member } => {
            let r = one(GroupAction::Remove, group, member).await?;
            print_line("removed");
            if let Some(admin) = r["newAdmin"].as_str() {
                print_line(&format!("new admin: {}", ctx.who(admin)));
            }
            if r["groupDeleted"] == true {
                print_line("the group had no one left and was deleted");
            }
        }
        G::Promote { group, member } => {
            let r = one(GroupAction::Promote, group, member).await?;
            print_line(if r["promoted"] == true {
                "promoted"
            } else {
                "already an admin"
            });
        }
        G::Delete { group } => {
            client
                .delete_group(&group)
                .await
                .context("deleting the group")?;
            print_line("deleted");
        }
        G::Info { group, json } => {
            let g = client
                .get_group(&group)
                .await
                .context("reading the group")?;
            if json {
                print_line(&g.to_string());
            } else {
                print_line(&format!("{} ({})", g["name"].as_str().unwrap_or(""), group));
                if let Some(d) = g["description"].as_str().filter(|d| !d.is_empty()) {
                    print_line(d);
                }
                for m in g["members"].as_array().into_iter().flatten() {
                    let who = ctx.who(m["userId"].as_str().unwrap_or(""));
                    let role = m["role"].as_str().unwrap_or("");
                    print_line(&format!("  {who}  {role}"));
                }
            }
        }
    }
    client.close().await;
    Ok(())
}
