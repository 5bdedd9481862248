//! Decrypting: messages and statuses with the room keys received, holding back what cannot be
//! read yet, and taking room keys from the device queue.

use super::*;

impl E2ee {
    /// Decrypts a status post with the key its poster's device shared;
    /// [`CryptoError::UnknownSession`] while that key has not arrived.
    pub fn decrypt_status(&self, s: &protocol::StatusPost) -> Result<String, CryptoError> {
        if envelope_kind(&s.payload) != Ok(EnvelopeKind::Megolm) {
            return Err(CryptoError::Malformed("not end-to-end encrypted".into()));
        }
        let mut st = self.state.lock().unwrap();
        let bytes = st.device.decrypt_message_as(
            &status_room(&s.user_id),
            &s.user_id,
            &s.device_id,
            Some(&s.status_id),
            &s.payload,
        )?;
        if let Err(e) = st.save() {
            tracing::warn!("saving the crypto state: {e}");
        }
        String::from_utf8(bytes).map_err(|_| CryptoError::Malformed("not UTF-8 text".into()))
    }

    /// Decrypts a chat message. A message whose room key has not arrived is held (see
    /// [`E2ee::take_released`] and [`E2ee::held`]).
    pub fn decrypt(&self, m: &Message) -> Decrypted {
        if !matches!(m.kind, MessageKind::Text | MessageKind::Media) {
            return Decrypted::NotEncrypted;
        }
        if envelope_kind(&m.payload) != Ok(EnvelopeKind::Megolm) {
            return Decrypted::Failed("not end-to-end encrypted".into());
        }
        let mut st = self.state.lock().unwrap();
        let result = st.device.decrypt_message_as(
            &m.session_id,
            &m.sender,
            &m.sender_device,
            Some(&m.msg_id),
            &m.payload,
        );
        match result {
            Ok(bytes) => {
                if let Err(e) = st.save() {
                    tracing::warn!("saving the crypto state: {e}");
                }
                match String::from_utf8(bytes) {
                    Ok(text) => Decrypted::Text(text),
                    Err(_) => Decrypted::Failed("not UTF-8 text".into()),
                }
            }
            Err(CryptoError::UnknownSession { session_id, .. }) => {
                let held = st.held.entry(session_id).or_default();
                if !held.iter().any(|h| h.msg_id == m.msg_id) {
                    held.push(m.clone());
                }
                Decrypted::Held
            }
            Err(e) => Decrypted::Failed(e.to_string()),
        }
    }

    /// Messages held for a room key.
    pub fn held(&self) -> Vec<Message> {
        let st = self.state.lock().unwrap();
        let mut all: Vec<Message> = st.held.values().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.session_id, a.seq).cmp(&(&b.session_id, b.seq)));
        all
    }

    /// Handles a device message: decrypts it (an Olm message from the device the server
    /// names), imports a room key, and returns the held messages it released, decrypted (or
    /// the failure for each). `Ok(None)` for a message already handled. An identity that
    /// changed is [`CryptoError::IdentityChanged`]: the message is left unacknowledged, to
    /// be read again once the user accepts the new identity.
    pub async fn receive_device_message(
        &self,
        c: &impl Caller,
        dm: &DeviceMessage,
    ) -> Result<Option<Vec<(Message, Decrypted)>>, ClientError> {
        if self.state.lock().unwrap().handled.contains(&dm.id) {
            return Ok(None);
        }
        // The key the message says it comes from: a cached listing with another key is stale
        // (the device may have uploaded new keys), so it is read again.
        let claimed_key = serde_json::from_str::<Value>(&dm.payload)
            .ok()
            .and_then(|v| v["sk"].as_str().map(str::to_owned));
        let sender = self
            .sender_device(c, &dm.sender, &dm.sender_device, claimed_key.as_deref())
            .await?;
        let Some(sender) = sender else {
            // A device the server no longer lists (removed): nothing to trust it with.
            tracing::debug!(
                sender = dm.sender,
                device = dm.sender_device,
                "device message from an unlisted device; dropped"
            );
            self.state.lock().unwrap().handled.insert(dm.id.clone());
            return Ok(Some(vec![]));
        };
        let key = sender.identity_key.clone().unwrap_or_default();
        let mut st = self.state.lock().unwrap();
        Self::check_identity(&mut st, &sender).map_err(crypto_err)?;
        let received =
            st.device
                .receive_to_device(&dm.sender, &dm.sender_device, &key, &dm.payload);
        st.handled.insert(dm.id.clone());
        let released = match received {
            Ok(ToDeviceMessage::RoomKey { session_id, .. }) => {
                st.held.remove(&session_id).unwrap_or_default()
            }
            Ok(ToDeviceMessage::Other(plaintext)) => {
                if let Some(offer) = HistoryOffer::parse(&plaintext) {
                    // Only this account's primary device holds the history to give; anyone
                    // else (another account, a companion) is ignored. The Olm envelope binds
                    // the sender's user and device, so the server cannot relabel them.
                    if dm.sender == st.device.user_id() && sender.primary {
                        st.offers.push(ReceivedOffer {
                            sender_device: dm.sender_device.clone(),
                            offer,
                        });
                    } else {
                        tracing::warn!(
                            sender = dm.sender,
                            device = dm.sender_device,
                            "history bundle from a device that is not this account's primary; ignored"
                        );
                    }
                }
                Vec::new()
            }
            Err(e @ CryptoError::IdentityChanged { .. }) => {
                st.handled.remove(&dm.id);
                return Err(crypto_err(e));
            }
            Err(e) => {
                tracing::debug!(
                    sender = dm.sender,
                    device = dm.sender_device,
                    "device message refused: {e}"
                );
                Vec::new()
            }
        };
        st.save()?;
        drop(st);
        Ok(Some(
            released
                .into_iter()
                .map(|m| {
                    let d = self.decrypt(&m);
                    (m, d)
                })
                .collect(),
        ))
    }

    /// The history bundle offers received from this account's primary device since the last
    /// call (see [`crate::history_bundle`]).
    pub fn take_history_offers(&self) -> Vec<ReceivedOffer> {
        std::mem::take(&mut self.state.lock().unwrap().offers)
    }

    /// The listed device of a sender, from the cache or (on a miss) from `listDevices`.
    pub(super) async fn sender_device(
        &self,
        c: &impl Caller,
        user: &str,
        device: &str,
        claimed_key: Option<&str>,
    ) -> Result<Option<UserDevice>, ClientError> {
        let cached = {
            let st = self.state.lock().unwrap();
            st.directory
                .get(user)
                .and_then(|ds| ds.iter().find(|d| d.device_id == device).cloned())
        };
        if let Some(d) = cached.filter(|d| {
            d.identity_key.is_some()
                && (claimed_key.is_none() || d.identity_key.as_deref() == claimed_key)
        }) {
            return Ok(Some(d));
        }
        let listed = list_devices(c, &[user.to_owned()]).await?;
        let found = listed
            .iter()
            .find(|d| d.user_id == user && d.device_id == device)
            .cloned();
        let mut st = self.state.lock().unwrap();
        st.directory.insert(
            user.to_owned(),
            listed.into_iter().filter(|d| d.user_id == user).collect(),
        );
        Ok(found.filter(|d| d.identity_key.is_some()))
    }
}
