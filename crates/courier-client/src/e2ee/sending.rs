//! Encrypting: a chat's messages and a user's statuses with Megolm, after sharing the room key
//! with every device that should read them (through the device queues, Olm-encrypted).

use super::*;

impl E2ee {
    /// Encrypts `plaintext` for a chat whose members are `members` (this user included or
    /// not), first sharing the chat's current room key with every member device that lacks it
    /// and rotating it if a device that had it is gone. Returns the `sendMessage` payload.
    ///
    /// A changed identity key of any member device is [`ClientError::Crypto`] with
    /// [`CryptoError::IdentityChanged`]: nothing is sent until the user accepts it.
    pub async fn encrypt_for(
        &self,
        c: &impl Caller,
        chat_session_id: &str,
        members: &[String],
        plaintext: &str,
    ) -> Result<String, ClientError> {
        let _one_at_a_time = self.sending.lock().await;
        let (me, my_device) = self.me();
        let mut users: Vec<String> = members.to_vec();
        users.push(me.clone());
        users.sort();
        users.dedup();
        let listed = list_devices(c, &users).await?;

        // Who should hold the key now, checked against the pins.
        let targets: BTreeMap<(String, String), UserDevice> = {
            let mut st = self.state.lock().unwrap();
            let mut by_user: HashMap<String, Vec<UserDevice>> = HashMap::new();
            for d in &listed {
                by_user
                    .entry(d.user_id.clone())
                    .or_default()
                    .push(d.clone());
            }
            for u in &users {
                st.directory
                    .insert(u.clone(), by_user.remove(u).unwrap_or_default());
            }
            let mut targets = BTreeMap::new();
            for d in listed.iter().filter(|d| users.contains(&d.user_id)) {
                Self::check_identity(&mut st, d).map_err(crypto_err)?;
                let is_me = d.user_id == me && d.device_id == my_device;
                if !is_me && d.identity_key.is_some() {
                    targets.insert((d.user_id.clone(), d.device_id.clone()), d.clone());
                }
            }
            // Anyone who had the key and is gone must not read what follows.
            let shared = st.device.shared_with(chat_session_id);
            if shared.iter().any(|k| !targets.contains_key(k)) {
                st.device.rotate(chat_session_id);
                tracing::debug!(chat_session_id, "rotated the room key: a device left");
            }
            st.save()?;
            targets
        };

        let (room_key, need) = {
            let mut st = self.state.lock().unwrap();
            let room_key = zeroize::Zeroizing::new(st.device.room_key(chat_session_id));
            let shared = st.device.shared_with(chat_session_id);
            let need: Vec<UserDevice> = targets
                .iter()
                .filter(|(k, _)| !shared.contains(k))
                .map(|(_, d)| d.clone())
                .collect();
            st.save()?;
            (room_key, need)
        };

        if !need.is_empty() {
            self.share_room_key(c, chat_session_id, &room_key, need)
                .await?;
        }
        let mut st = self.state.lock().unwrap();
        let payload = st
            .device
            .encrypt_message(chat_session_id, plaintext.as_bytes());
        st.save()?;
        Ok(payload)
    }

    /// Encrypts a status post of this user once for its whole audience (user ids, this user
    /// left out or not): the status room (`status:<userId>`) is a chat like any other, so its
    /// key reaches the audience's and this user's other devices over Olm, and is rotated when
    /// a device that held it is no longer in the audience.
    pub async fn encrypt_status(
        &self,
        c: &impl Caller,
        audience: &[String],
        plaintext: &str,
    ) -> Result<String, ClientError> {
        let room = status_room(&self.me().0);
        self.encrypt_for(c, &room, audience, plaintext).await
    }

    /// Sends `plaintext` over Olm to this account's device `device_id` only (a history bundle
    /// offer), claiming a one-time key if there is no Olm session yet. `Ok(false)` if the
    /// server does not list that device with keys, or it has no one-time key left.
    pub async fn send_to_own_device(
        &self,
        c: &impl Caller,
        device_id: &str,
        plaintext: &[u8],
    ) -> Result<bool, ClientError> {
        let _one_at_a_time = self.sending.lock().await;
        let (me, _) = self.me();
        let listed = list_devices(c, std::slice::from_ref(&me)).await?;
        let Some(target) = listed
            .into_iter()
            .find(|d| d.user_id == me && d.device_id == device_id && d.identity_key.is_some())
        else {
            return Ok(false);
        };
        let key = target.identity_key.clone().unwrap_or_default();
        {
            let mut st = self.state.lock().unwrap();
            Self::check_identity(&mut st, &target).map_err(crypto_err)?;
        }
        let has_session = self.state.lock().unwrap().device.has_olm_session(&key);
        let mut otk = None;
        if !has_session {
            let ids = [device_id.to_owned()];
            let bundle = claim_keys(c, &me, Some(&ids[..]))
                .await?
                .into_iter()
                .find(|b| b.user_id == me && b.device_id == device_id);
            let Some(b) = bundle else { return Ok(false) };
            // The bundle must be the listed device's, and its key signed by it.
            if Some(b.identity_key.as_str()) != target.identity_key.as_deref()
                || Some(b.signing_key.as_str()) != target.signing_key.as_deref()
            {
                return Err(protocol_error(
                    "claimed keys differ from the listed ones; not sending",
                ));
            }
            let Some(k) = b.one_time_key else {
                return Ok(false);
            };
            verify_one_time_key(&b.signing_key, &k.key, &k.signature).map_err(crypto_err)?;
            otk = Some(k.key);
        }
        let payload = {
            let mut st = self.state.lock().unwrap();
            let payload = st
                .device
                .encrypt_to_device(&me, device_id, &key, otk.as_deref(), plaintext)
                .map_err(crypto_err)?;
            st.save()?;
            payload
        };
        let result = send_to_device(
            c,
            &[OutgoingDeviceMessage {
                user_id: me,
                device_id: device_id.to_owned(),
                payload,
            }],
        )
        .await?;
        Ok(result.unknown_devices.is_empty())
    }

    /// Sends the room key to `devices` over Olm, claiming one-time keys where there is no
    /// Olm session yet, and records who got it.
    pub(super) async fn share_room_key(
        &self,
        c: &impl Caller,
        chat_session_id: &str,
        room_key: &str,
        devices: Vec<UserDevice>,
    ) -> Result<(), ClientError> {
        // One-time keys for the devices without an Olm session, one claim per user.
        let mut without: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let st = self.state.lock().unwrap();
            for d in &devices {
                let key = d.identity_key.as_deref().unwrap_or_default();
                if !st.device.has_olm_session(key) {
                    without
                        .entry(d.user_id.clone())
                        .or_default()
                        .push(d.device_id.clone());
                }
            }
        }
        let mut claimed: HashMap<(String, String), String> = HashMap::new();
        for (user, ids) in &without {
            for b in claim_keys(c, user, Some(ids)).await? {
                let listed = devices
                    .iter()
                    .find(|d| d.user_id == b.user_id && d.device_id == b.device_id);
                let Some(listed) = listed else { continue };
                // The bundle must be the listed device's, and its key signed by it.
                if listed.identity_key.as_deref() != Some(b.identity_key.as_str())
                    || listed.signing_key.as_deref() != Some(b.signing_key.as_str())
                {
                    tracing::warn!(
                        user = b.user_id,
                        device = b.device_id,
                        "claimed keys differ from the listed ones; not sharing"
                    );
                    continue;
                }
                let Some(otk) = b.one_time_key else {
                    tracing::debug!(
                        user = b.user_id,
                        device = b.device_id,
                        "no one-time key left"
                    );
                    continue;
                };
                verify_one_time_key(&b.signing_key, &otk.key, &otk.signature)
                    .map_err(crypto_err)?;
                claimed.insert((b.user_id, b.device_id), otk.key);
            }
        }

        let mut outgoing = Vec::new();
        {
            let mut st = self.state.lock().unwrap();
            for d in &devices {
                let key = d.identity_key.as_deref().unwrap_or_default();
                let otk = claimed.get(&(d.user_id.clone(), d.device_id.clone()));
                if otk.is_none() && !st.device.has_olm_session(key) {
                    continue;
                }
                let payload = st
                    .device
                    .encrypt_to_device(
                        &d.user_id,
                        &d.device_id,
                        key,
                        otk.map(String::as_str),
                        room_key.as_bytes(),
                    )
                    .map_err(crypto_err)?;
                outgoing.push(OutgoingDeviceMessage {
                    user_id: d.user_id.clone(),
                    device_id: d.device_id.clone(),
                    payload,
                });
            }
            st.save()?;
        }
        for batch in batches(outgoing, self.request_budget) {
            let result = send_to_device(c, &batch).await?;
            let mut st = self.state.lock().unwrap();
            let unknown: BTreeSet<(String, String)> = result
                .unknown_devices
                .iter()
                .map(|d| (d.user_id.clone(), d.device_id.clone()))
                .collect();
            for m in &batch {
                if !unknown.contains(&(m.user_id.clone(), m.device_id.clone())) {
                    st.device
                        .mark_shared(chat_session_id, &m.user_id, &m.device_id);
                }
            }
            st.save()?;
        }
        Ok(())
    }
}
