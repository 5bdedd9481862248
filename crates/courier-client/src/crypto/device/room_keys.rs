//! Room keys in and out of a user backup, and the device's whole state as a pickle for the
//! encrypted store.

use super::*;

impl DeviceCrypto {
    /// Every inbound Megolm session (this device's own included), exported at its first known
    /// index with what it is bound to, for a user backup: a restored device can read what
    /// these sessions encrypted. Secret: only ever put inside an encrypted backup.
    pub fn export_room_keys(&self) -> Vec<ExportedRoomKey> {
        let mut keys: Vec<ExportedRoomKey> = self
            .inbound
            .values()
            .map(|e| ExportedRoomKey {
                chat_session_id: e.chat_session_id.clone(),
                sender_user: e.sender_user.clone(),
                sender_device: e.sender_device.clone(),
                sender_key: e.sender_key.clone(),
                session_id: e.session.session_id(),
                key: Zeroizing::new(e.session.export_at_first_known_index().to_base64()),
            })
            .collect();
        keys.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        keys
    }

    /// Imports room keys from a backup. Each session stays bound to its chat, sender and the
    /// sender's identity key; the sender's key is pinned if this device has no pin for it yet.
    /// A key whose session id does not match, or whose sender this device pinned with another
    /// identity key, is skipped. Returns how many sessions were added or extended.
    pub fn import_room_keys(&mut self, keys: &[ExportedRoomKey]) -> usize {
        let mut imported = 0;
        for k in keys {
            let Ok(exported) = ExportedSessionKey::from_base64(&k.key) else {
                continue;
            };
            let session =
                InboundGroupSession::import(&exported, megolm::SessionConfig::version_1());
            if session.session_id() != k.session_id {
                continue;
            }
            if self
                .trust
                .observe(&k.sender_user, &k.sender_device, &k.sender_key)
                .is_err()
            {
                continue;
            }
            let Ok(sender_key) = canonical_key(&k.sender_key) else {
                continue;
            };
            match self.inbound.entry(k.session_id.clone()) {
                Entry::Occupied(mut entry) => {
                    let existing = entry.get_mut();
                    let same = existing.chat_session_id == k.chat_session_id
                        && existing.sender_user == k.sender_user
                        && existing.sender_device == k.sender_device
                        && existing.sender_key == sender_key;
                    if same && session.first_known_index() < existing.session.first_known_index() {
                        existing.session = session;
                        imported += 1;
                    }
                }
                Entry::Vacant(entry) => {
                    entry.insert(InboundEntry {
                        chat_session_id: k.chat_session_id.clone(),
                        sender_user: k.sender_user.clone(),
                        sender_device: k.sender_device.clone(),
                        sender_key,
                        session,
                        seen: BTreeMap::new(),
                    });
                    imported += 1;
                }
            }
        }
        imported
    }

    pub(crate) fn to_snapshot(&self) -> Snapshot {
        let mut olm: Vec<OlmSnapshot> = self
            .olm
            .iter()
            .filter(|(_, sessions)| !sessions.is_empty())
            .map(|(peer_key, sessions)| OlmSnapshot {
                peer_key: peer_key.clone(),
                sessions: sessions.iter().map(Session::pickle).collect(),
            })
            .collect();
        olm.sort_by(|a, b| a.peer_key.cmp(&b.peer_key));
        Snapshot {
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            account: self.account.pickle(),
            olm,
            outbound: self
                .outbound
                .iter()
                .map(|(chat, session)| OutboundSnapshot {
                    chat_session_id: chat.clone(),
                    session: session.pickle(),
                    shared_with: self.shared.get(chat).cloned().unwrap_or_default(),
                })
                .collect(),
            inbound: self
                .inbound
                .values()
                .map(|entry| InboundSnapshot {
                    chat_session_id: entry.chat_session_id.clone(),
                    sender_user: entry.sender_user.clone(),
                    sender_device: entry.sender_device.clone(),
                    sender_key: entry.sender_key.clone(),
                    session: entry.session.pickle(),
                    seen: entry.seen.clone(),
                })
                .collect(),
            trust: self.trust.clone(),
        }
    }

    pub(crate) fn from_snapshot(snapshot: Snapshot) -> Self {
        Self {
            user_id: snapshot.user_id,
            device_id: snapshot.device_id,
            account: Account::from_pickle(snapshot.account),
            olm: snapshot
                .olm
                .into_iter()
                .map(|o| {
                    let sessions = o.sessions.into_iter().map(Session::from_pickle).collect();
                    (o.peer_key, sessions)
                })
                .collect(),
            shared: snapshot
                .outbound
                .iter()
                .map(|o| (o.chat_session_id.clone(), o.shared_with.clone()))
                .collect(),
            outbound: snapshot
                .outbound
                .into_iter()
                .map(|o| (o.chat_session_id, GroupSession::from_pickle(o.session)))
                .collect(),
            inbound: snapshot
                .inbound
                .into_iter()
                .map(|i| {
                    let session = InboundGroupSession::from_pickle(i.session);
                    let entry = InboundEntry {
                        chat_session_id: i.chat_session_id,
                        sender_user: i.sender_user,
                        sender_device: i.sender_device,
                        sender_key: i.sender_key,
                        session,
                        seen: i.seen,
                    };
                    (entry.session.session_id(), entry)
                })
                .collect(),
            trust: snapshot.trust,
        }
    }

    #[cfg(test)]
    pub(crate) fn outbound_mut(&mut self, chat_session_id: &str) -> Option<&mut GroupSession> {
        self.outbound.get_mut(chat_session_id)
    }
}
