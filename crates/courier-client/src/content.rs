//! What a message says once decrypted: text, or a reply, a reaction or an edit. These travel
//! end to end encrypted inside ordinary `text` messages, so the server stores and forwards them
//! as it does any message and cannot tell them apart; clients read them with [`Content::decode`]
//! and show a chat with [`Thread`].
//!
//! A plain text message's plaintext is the text itself, as it always was. The other kinds are
//! [`MARK`] followed by JSON (`{"t": "reply", "to": msgId, "text"}`, `{"t": "reaction", "to",
//! "emoji"}`, `{"t": "edit", "to", "text"}`): a control character no one types, so a text that
//! happens to be JSON stays text, and an older client shows the JSON rather than nothing.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Starts the plaintext of every kind but plain text.
pub const MARK: char = '\u{1}';

/// How long after sending it its sender may edit a message (15 minutes, as WhatsApp).
pub const EDIT_WINDOW_SECS: i64 = 15 * 60;

/// How much of the quoted message a reply shows.
pub const QUOTE_CHARS: usize = 80;

/// A message's decrypted content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub enum Content {
    /// Text.
    Text {
        /// What was typed.
        text: String,
    },
    /// Text that quotes an earlier message of the chat.
    Reply {
        /// The message quoted.
        to: String,
        /// What was typed.
        text: String,
    },
    /// The sender's reaction to a message: one per person per message, replacing the one before;
    /// an empty `emoji` removes it.
    Reaction {
        /// The message reacted to.
        to: String,
        /// One emoji, or empty to remove the reaction.
        emoji: String,
    },
    /// New text for one of the sender's own messages, within [`EDIT_WINDOW_SECS`].
    Edit {
        /// The message edited.
        to: String,
        /// Its new text.
        text: String,
    },
}

impl Content {
    /// Plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Content::Text { text: text.into() }
    }

    /// The plaintext to encrypt.
    pub fn encode(&self) -> String {
        match self {
            // A typed control character is dropped, so no text can pass for another kind.
            Content::Text { text } => text.trim_start_matches(MARK).to_owned(),
            other => format!(
                "{MARK}{}",
                serde_json::to_string(other).expect("content serialises")
            ),
        }
    }

    /// Reads a decrypted plaintext: a kind this client does not know, or a malformed one, is
    /// shown as text (never dropped).
    pub fn decode(plaintext: &str) -> Self {
        plaintext
            .strip_prefix(MARK)
            .and_then(|json| serde_json::from_str::<Content>(json).ok())
            .unwrap_or_else(|| Content::text(plaintext))
    }
}

/// One message of a chat as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    /// The message.
    pub msg_id: String,
    /// Who sent it.
    pub sender: String,
    /// When the server stored it.
    pub sent_at: String,
    /// Its text, after edits; `None` once deleted (or for media, which the caller shows).
    pub text: Option<String>,
    /// The message it replies to, with the start of its text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<Quote>,
    /// Each person's reaction (user id → emoji).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reactions: BTreeMap<String, String>,
    /// Edited by its sender.
    #[serde(default)]
    pub edited: bool,
    /// Deleted for everyone by its sender: show "This message was deleted".
    #[serde(default)]
    pub deleted: bool,
}

/// What a reply shows of the message it quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quote {
    /// The quoted message.
    pub msg_id: String,
    /// Its sender, if this reader has the message.
    pub sender: Option<String>,
    /// The start of its text ([`QUOTE_CHARS`]), if this reader has it and it is not deleted.
    pub text: Option<String>,
}

/// A chat as its reader sees it: messages in order, with edits, reactions and deletions
/// applied to the messages they are about. Reactions and edits are not messages of their own.
#[derive(Debug, Clone, Default)]
pub struct Thread {
    shown: Vec<Shown>,
    by_id: HashMap<String, usize>,
    /// Every message applied, reactions and edits included: delivery is at least once, and an
    /// old reaction applied again must not undo a newer one.
    applied: HashSet<String>,
}

impl Thread {
    /// An empty chat.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message in session order (`sent_at` is the server's RFC 3339 time), or applies
    /// it to the message it is about. An edit by anyone but the sender, or after
    /// [`EDIT_WINDOW_SECS`], and anything about a message this reader does not have, changes
    /// nothing. Returns whether something changed.
    pub fn apply(&mut self, msg_id: &str, sender: &str, sent_at: &str, content: Content) -> bool {
        if !self.applied.insert(msg_id.to_owned()) {
            return false;
        }
        match content {
            Content::Text { text } => self.push(msg_id, sender, sent_at, Some(text), None),
            Content::Reply { to, text } => {
                let quote = match self.get(&to) {
                    Some(q) => Quote {
                        msg_id: to.clone(),
                        sender: Some(q.sender.clone()),
                        text: q
                            .text
                            .as_ref()
                            .map(|t| t.chars().take(QUOTE_CHARS).collect()),
                    },
                    None => Quote {
                        msg_id: to.clone(),
                        sender: None,
                        text: None,
                    },
                };
                self.push(msg_id, sender, sent_at, Some(text), Some(quote))
            }
            Content::Reaction { to, emoji } => match self.get_mut(&to) {
                Some(m) if !m.deleted => {
                    if emoji.is_empty() {
                        m.reactions.remove(sender);
                    } else {
                        m.reactions.insert(sender.to_owned(), emoji);
                    }
                    true
                }
                _ => false,
            },
            Content::Edit { to, text } => match self.get_mut(&to) {
                Some(m)
                    if m.sender == sender
                        && !m.deleted
                        && within_edit_window(&m.sent_at, sent_at) =>
                {
                    m.text = Some(text);
                    m.edited = true;
                    true
                }
                _ => false,
            },
        }
    }

    /// Adds a message whose text this reader does not show as text (media, undecryptable).
    pub fn apply_other(&mut self, msg_id: &str, sender: &str, sent_at: &str) -> bool {
        if !self.applied.insert(msg_id.to_owned()) {
            return false;
        }
        self.push(msg_id, sender, sent_at, None, None)
    }

    /// Its sender deleted the message for everyone: its text, quote and reactions go (a
    /// tombstone read on sync, or the `messageDeleted` event). Returns whether it was shown.
    pub fn delete(&mut self, msg_id: &str, sender: &str, sent_at: &str) -> bool {
        if !self.by_id.contains_key(msg_id) {
            self.applied.insert(msg_id.to_owned());
            self.push(msg_id, sender, sent_at, None, None);
        }
        let m = self.get_mut(msg_id).expect("just added");
        let changed = !m.deleted;
        m.deleted = true;
        m.text = None;
        m.reply_to = None;
        m.reactions.clear();
        m.edited = false;
        changed
    }

    /// Deletes a message this reader has, if it has it (the `messageDeleted` event).
    pub fn delete_known(&mut self, msg_id: &str) -> bool {
        match self
            .get(msg_id)
            .map(|m| (m.sender.clone(), m.sent_at.clone()))
        {
            Some((sender, at)) => self.delete(msg_id, &sender, &at),
            None => false,
        }
    }

    /// One message.
    pub fn get(&self, msg_id: &str) -> Option<&Shown> {
        self.by_id.get(msg_id).map(|&i| &self.shown[i])
    }

    /// The messages, in order.
    pub fn messages(&self) -> &[Shown] {
        &self.shown
    }

    fn get_mut(&mut self, msg_id: &str) -> Option<&mut Shown> {
        self.by_id.get(msg_id).map(|&i| &mut self.shown[i])
    }

    fn push(
        &mut self,
        msg_id: &str,
        sender: &str,
        sent_at: &str,
        text: Option<String>,
        reply_to: Option<Quote>,
    ) -> bool {
        self.by_id.insert(msg_id.to_owned(), self.shown.len());
        self.shown.push(Shown {
            msg_id: msg_id.to_owned(),
            sender: sender.to_owned(),
            sent_at: sent_at.to_owned(),
            text,
            reply_to,
            reactions: BTreeMap::new(),
            edited: false,
            deleted: false,
        });
        true
    }
}

/// Whether an edit sent at `edit_at` is within [`EDIT_WINDOW_SECS`] of the original's `sent_at`
/// (both the server's times; unreadable times allow nothing).
fn within_edit_window(sent_at: &str, edit_at: &str) -> bool {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (parse(sent_at), parse(edit_at)) {
        (Some(a), Some(b)) => (b - a).num_seconds() <= EDIT_WINDOW_SECS,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-12-07T12:00:00.000Z";
    const T10: &str = "2026-12-07T12:10:00.000Z";
    const T20: &str = "2026-12-07T12:20:00.000Z";

    fn reply(to: &str, text: &str) -> Content {
        Content::Reply {
            to: to.into(),
            text: text.into(),
        }
    }
    fn react(to: &str, emoji: &str) -> Content {
        Content::Reaction {
            to: to.into(),
            emoji: emoji.into(),
        }
    }
    fn edit(to: &str, text: &str) -> Content {
        Content::Edit {
            to: to.into(),
            text: text.into(),
        }
    }

    #[test]
    fn every_kind_round_trips_and_text_that_looks_like_json_stays_text() {
        for c in [
            Content::text("hello"),
            reply("s.1", "yes"),
            react("s.1", "👍"),
            react("s.1", ""),
            edit("s.1", "fixed"),
        ] {
            assert_eq!(Content::decode(&c.encode()), c);
        }
        assert_eq!(
            Content::text("hi").encode(),
            "hi",
            "text is as it always was"
        );
        let json = r#"{"t":"reaction","to":"s.1","emoji":"x"}"#;
        assert_eq!(Content::decode(json), Content::text(json));
        // A typed mark cannot make text into another kind.
        let forged = Content::text(format!("{MARK}{json}"));
        assert_eq!(Content::decode(&forged.encode()), Content::text(json));
        // An unknown kind is shown, not dropped.
        let later = format!("{MARK}{{\"t\":\"poll\",\"q\":\"?\"}}");
        assert_eq!(Content::decode(&later), Content::text(later.clone()));
    }

    #[test]
    fn replies_quote_reactions_replace_and_edits_keep_to_the_sender_and_window() {
        let mut t = Thread::new();
        t.apply("s.1", "u_a", T0, Content::text("lunch at 1?"));
        t.apply("s.2", "u_b", T0, reply("s.1", "yes!"));
        assert_eq!(
            t.get("s.2").unwrap().reply_to,
            Some(Quote {
                msg_id: "s.1".into(),
                sender: Some("u_a".into()),
                text: Some("lunch at 1?".into())
            })
        );
        // One reaction per person: replaced, then removed; someone else's stays.
        t.apply("s.3", "u_b", T0, react("s.1", "👍"));
        t.apply("s.4", "u_b", T0, react("s.1", "❤️"));
        t.apply("s.5", "u_a", T0, react("s.1", "😂"));
        let r: Vec<_> = t.get("s.1").unwrap().reactions.iter().collect();
        assert_eq!(
            r,
            [
                (&"u_a".to_string(), &"😂".to_string()),
                (&"u_b".to_string(), &"❤️".to_string())
            ]
        );
        t.apply("s.6", "u_b", T0, react("s.1", ""));
        assert_eq!(t.get("s.1").unwrap().reactions.len(), 1);
        // Edits: not by another member, not after 15 minutes.
        assert!(!t.apply("s.7", "u_b", T10, edit("s.1", "hijacked")));
        assert!(t.apply("s.8", "u_a", T10, edit("s.1", "lunch at 2?")));
        assert!(!t.apply("s.9", "u_a", T20, edit("s.1", "too late")));
        let m = t.get("s.1").unwrap();
        assert_eq!((m.text.as_deref(), m.edited), (Some("lunch at 2?"), true));
        // Reactions and edits are not messages of their own.
        let ids: Vec<_> = t.messages().iter().map(|m| m.msg_id.as_str()).collect();
        assert_eq!(ids, ["s.1", "s.2"]);
        // Applying the same message twice changes nothing.
        assert!(!t.apply("s.3", "u_b", T0, react("s.1", "👍")));
    }

    #[test]
    fn a_deleted_message_loses_its_text_reactions_and_can_no_longer_be_edited() {
        let mut t = Thread::new();
        t.apply("s.1", "u_a", T0, Content::text("oops"));
        t.apply("s.2", "u_b", T0, react("s.1", "😮"));
        assert!(t.delete_known("s.1"));
        let m = t.get("s.1").unwrap();
        assert!(m.deleted && m.text.is_none() && m.reactions.is_empty());
        assert!(!t.apply("s.3", "u_a", T0, edit("s.1", "back")));
        assert!(!t.apply("s.4", "u_b", T0, react("s.1", "👍")));
        // A tombstone read on sync for a message never seen still takes its place.
        assert!(t.delete("s.5", "u_a", T0));
        assert!(!t.delete_known("s.9"));
        assert_eq!(t.messages().len(), 2);
    }
}
