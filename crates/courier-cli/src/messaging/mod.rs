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
use courier_client::content::{Content, Thread};
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

mod chat;
mod timer;

pub use chat::chat;
use chat::member_id;
pub use timer::set_timer;

const STATE: &str = "state.json";

/// How long `inbox` waits after its sync for room keys that had not come with their messages.
const ROOM_KEY_GRACE: Duration = Duration::from_secs(10);

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

/// Which chat a command is about: a phone number, or `--session`, or `--user`.
#[derive(clap::Args)]
pub struct TargetArgs {
    /// The phone number (E.164) of a direct chat.
    #[arg(conflicts_with_all = ["session", "user"])]
    phone: Option<String>,
    /// A session (a group's or a direct chat's) by id.
    #[arg(long, conflicts_with = "user")]
    session: Option<String>,
    /// The direct chat with this user id.
    #[arg(long)]
    user: Option<String>,
}

impl TargetArgs {
    /// The chat named, if one is.
    pub fn target(self) -> Option<Target> {
        match (self.session, self.user, self.phone) {
            (Some(s), _, _) => Some(Target::Session(s)),
            (None, Some(u), _) => Some(Target::User(u)),
            (None, None, Some(p)) => Some(Target::Phone(p)),
            (None, None, None) => None,
        }
    }
}

/// What every messaging command needs.
pub struct Ctx<'a> {
    pub(crate) store: &'a Store,
    ws_url: String,
    pub(crate) me: Stored,
    /// The people this user saved, by user id (`courier contacts`).
    contacts: crate::address_book::Contacts,
    /// How others are shown, from their profiles, as learnt in this run ([`Ctx::learn`]).
    names: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl<'a> Ctx<'a> {
    pub fn new(store: &'a Store, ws_url: &str) -> Result<Self> {
        Ok(Self {
            store,
            ws_url: ws_url.to_owned(),
            me: store.credentials()?,
            contacts: crate::address_book::load(store)?,
            names: Default::default(),
        })
    }

    /// Learns how to show `users` who are not saved contacts: `~` and their profile name, with
    /// their number when the server shows it (it does to those who share a chat with them).
    /// A profile that cannot be read leaves the user shown by id.
    pub(crate) async fn learn<'u>(
        &self,
        client: &Client,
        users: impl IntoIterator<Item = &'u str>,
    ) {
        for user in users {
            let known = user == self.me.user_id
                || self.contacts.get(user).is_some_and(|c| c.name.is_some())
                || self.names.lock().unwrap().contains_key(user);
            if known {
                continue;
            }
            let Ok(p) = client.get_profile(user).await else {
                continue;
            };
            let phone = p
                .phone
                .or_else(|| self.contacts.get(user).map(|c| c.phone.clone()));
            let shown = match (p.name.filter(|n| !n.trim().is_empty()), phone) {
                (Some(name), Some(phone)) => format!("~{name} ({phone})"),
                (Some(name), None) => format!("~{name}"),
                (None, Some(phone)) => phone,
                (None, None) => continue,
            };
            self.names.lock().unwrap().insert(user.to_owned(), shown);
        }
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

    /// Connects without reading or acknowledging anything (reading is for `inbox` and
    /// `chat`): for commands that only act.
    pub(crate) async fn connect_quietly(&self) -> Result<(Client, Events)> {
        let mut config = self.config()?;
        config.sync_on_connect = false;
        config.auto_ack_delivered = false;
        self.connect(config).await
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

    /// Forgets what a message deleted for everyone said, in this device's history.
    pub(crate) fn erase(&self, msg_id: &str) {
        let result = HistoryStore::open(self.store.crypto_dir()).and_then(|h| h.erase(msg_id));
        if let Err(e) = result {
            eprintln!("courier: could not update the history: {e}");
        }
    }

    /// How a user is shown: "me", the name this user saved them under, else what [`Ctx::learn`]
    /// found, else their saved number, else their id.
    pub(crate) fn who(&self, user_id: &str) -> String {
        if user_id == self.me.user_id {
            return "me".to_owned();
        }
        let saved = self.contacts.get(user_id);
        if let Some(name) = saved.and_then(|c| c.name.clone()) {
            return name;
        }
        if let Some(shown) = self.names.lock().unwrap().get(user_id) {
            return shown.clone();
        }
        saved.map_or_else(|| user_id.to_owned(), |c| c.phone.clone())
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

/// The text of a message, as shown on its own (the inbox; `chat` shows replies, reactions and
/// edits with the messages they are about).
fn text_of(m: &Message) -> String {
    match m.kind {
        MessageKind::Text => match m.text.as_deref() {
            Some(plaintext) => plaintext_shown(plaintext),
            None => "(cannot be read)".to_owned(),
        },
        MessageKind::Deleted => DELETED.to_owned(),
        MessageKind::System if deletion(m).is_some() => "(deleted a message)".to_owned(),
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

/// A text message's decrypted plaintext as shown on its own: replies, reactions and edits say
/// what they are.
pub(crate) fn plaintext_shown(plaintext: &str) -> String {
    match Content::decode(plaintext) {
        Content::Text { text } => text,
        Content::Reply { text, .. } => format!("(reply) {text}"),
        Content::Reaction { emoji, .. } if emoji.is_empty() => "(removed a reaction)".to_owned(),
        Content::Reaction { emoji, .. } => format!("(reacted {emoji})"),
        Content::Edit { text, .. } => format!("(edited) {text}"),
    }
}

/// What a message deleted for everyone shows.
pub(crate) const DELETED: &str = "This message was deleted";

/// The message a `system` message records the deletion of, if it is such a record.
fn deletion(m: &Message) -> Option<String> {
    match Event::for_message(m.clone()) {
        Event::MessageDeleted { msg_id, .. } => Some(msg_id),
        _ => None,
    }
}

pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `courier send`.
/// `courier delete <msgId>`: deletes one of this user's messages for everyone (within 48 hours
/// of sending it), and its words from this device's history.
pub async fn delete(ctx: &Ctx<'_>, msg_id: &str) -> Result<()> {
    // A message id is `<sessionId>.<seq>`.
    let Some((session, _)) = msg_id.rsplit_once('.') else {
        bail!("{msg_id} is not a message id (they look like s_….12; see `courier history --json`)");
    };
    let (client, _events) = ctx.connect_quietly().await?;
    let result = client.delete_message(session, msg_id).await;
    client.close().await;
    result.map_err(|e| anyhow!("not deleted: {e}"))?;
    ctx.erase(msg_id);
    print_line("deleted for everyone");
    Ok(())
}

pub async fn send(ctx: &Ctx<'_>, target: Target, text: &str, as_json: bool) -> Result<()> {
    if text.is_empty() {
        bail!("nothing to send");
    }
    // Only send: reading (and acknowledging) is for `inbox` and `chat`.
    let (client, _events) = ctx.connect_quietly().await?;
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
    // Messages whose room key had not come when the sync ended: waited for a little, and if it
    // still has not come, the cursor is saved before them, so the next run reads them again (its
    // key is in the device queue by then) instead of never showing them.
    let mut waiting: BTreeMap<String, Message> = BTreeMap::new();
    let grace = tokio::time::sleep(timeout);
    tokio::pin!(grace);
    let mut synced = false;
    let mut count = 0usize;
    loop {
        if synced && waiting.is_empty() {
            break;
        }
        let event = tokio::select! {
            e = events.recv() => e,
            _ = &mut grace, if synced => break,
            _ = &mut deadline, if !synced => {
                ctx.save_cursors(&client.cursors())?;
                bail!("timed out before the inbox was synced ({count} messages shown)");
            }
        };
        match event {
            Some(Event::Message(m)) => {
                waiting.remove(&m.msg_id);
                count += 1;
                ctx.learn(&client, [m.sender.as_str()]).await;
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
                if reason == courier_client::client::ROOM_KEY_PENDING {
                    waiting.insert(m.msg_id.clone(), m.clone());
                }
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
            Some(Event::MessageDeleted {
                session_id,
                msg_id,
                by,
                message,
            }) => {
                count += 1;
                ctx.erase(&msg_id);
                let at = message.as_ref().map(|m| m.sent_at.as_str()).unwrap_or("");
                if as_json {
                    print_line(
                        &json!({"event": "messageDeleted", "sessionId": session_id,
                                "msgId": msg_id, "by": by, "sentAt": at})
                        .to_string(),
                    );
                } else {
                    print_line(&format!(
                        "[{session_id}] {} {} deleted a message for everyone",
                        date_time(at),
                        ctx.who(&by)
                    ));
                }
            }
            Some(Event::DisappearingTimer {
                session_id,
                seconds,
                by,
                message,
            }) => {
                count += 1;
                let at = message.as_ref().map(|m| m.sent_at.as_str()).unwrap_or("");
                if as_json {
                    print_line(
                        &json!({"event": "disappearingTimer", "sessionId": session_id,
                                "seconds": seconds, "by": by, "sentAt": at})
                        .to_string(),
                    );
                } else {
                    print_line(&format!(
                        "[{session_id}] {} {}",
                        date_time(at),
                        timer::notice(&ctx.who(&by), seconds)
                    ));
                }
            }
            Some(Event::Synced) => {
                synced = true;
                grace
                    .as_mut()
                    .reset(tokio::time::Instant::now() + ROOM_KEY_GRACE);
            }
            Some(Event::Unauthorized) => bail!(refused()),
            Some(Event::Error(e)) => {
                ctx.save_cursors(&client.cursors())?;
                bail!("{e}");
            }
            Some(_) => {}
            None => bail!("connection closed"),
        }
    }
    let mut cursors = client.cursors();
    let mut still: Vec<&Message> = waiting.values().collect();
    still.sort_by_key(|m| m.seq);
    for m in still {
        // Before the first such message of its session (later ones follow from there).
        if cursors.seq(&m.session_id) >= m.seq {
            let seq = m.seq - 1;
            let cursor = courier_client::cursors::SessionCursor {
                seq,
                msg_id: (seq > 0).then(|| format!("{}.{seq}", m.session_id)),
                ahead: BTreeMap::new(),
            };
            cursors.set(&m.session_id, cursor);
        }
    }
    ctx.save_cursors(&cursors)?;
    client.close().await;
    if !as_json && count == 0 {
        eprintln!("No new messages.");
    }
    Ok(())
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
                let members: Vec<&str> = g["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["userId"].as_str())
                    .collect();
                ctx.learn(client, members).await;
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
