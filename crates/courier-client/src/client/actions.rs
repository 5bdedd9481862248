//! The actions of a [`Client`]: each sends its request through [`Client::call`] and reads the
//! reply with the protocol's types.

use super::*;

impl Client {
    /// `lookupUser`: the user id behind a phone number.
    pub async fn lookup_user(&self, phone: &str) -> Result<String, ClientError> {
        let r = self.call(protocol::lookup_user(phone), true).await?;
        protocol::field_str(&r, "userId")
    }

    /// `discoverContacts`: which of up to 1000 address-book numbers (E.164; others are
    /// skipped) have an account, for address-book sync. Each call spends one of the account's
    /// few a day, so it is not retried: past the budget it answers `LIMIT_EXCEEDED` at once,
    /// with the seconds until the next day in `retryAfter`.
    pub async fn discover_contacts(
        &self,
        phones: &[String],
    ) -> Result<Vec<protocol::DiscoveredContact>, ClientError> {
        protocol::discovered(
            self.call(protocol::discover_contacts(phones), false)
                .await?,
        )
    }

    /// `initiateGroupChatSession`: the new group's id (also its session id). Not retried after
    /// a lost reply (a retry would create a second group).
    pub async fn create_group(
        &self,
        name: &str,
        description: Option<&str>,
        members: &[String],
    ) -> Result<String, ClientError> {
        let r = self
            .call(protocol::initiate_group(name, description, members), false)
            .await?;
        protocol::field_str(&r, "groupId")
    }

    /// `addUserToGroup`, `removeUserFromGroup` or `promoteUserToAdmin` (each idempotent).
    pub async fn group_member(
        &self,
        action: protocol::GroupAction,
        group_id: &str,
        user_id: &str,
    ) -> Result<Value, ClientError> {
        self.call(protocol::group_member(action, group_id, user_id), true)
            .await
    }

    /// `getGroup`: name, description, members with roles.
    pub async fn get_group(&self, group_id: &str) -> Result<Value, ClientError> {
        self.call(protocol::get_group(group_id), true).await
    }

    /// `deleteGroup`.
    pub async fn delete_group(&self, group_id: &str) -> Result<Value, ClientError> {
        self.call(protocol::delete_group(group_id), true).await
    }

    /// `initiateDirectChatSession` (idempotent: the same two users always get the same session).
    pub async fn initiate_direct_chat(
        &self,
        peer_user_id: &str,
        handshake: Option<&str>,
    ) -> Result<protocol::DirectChat, ClientError> {
        let req = protocol::initiate_direct_chat(peer_user_id, handshake);
        protocol::parse(self.call(req, true).await?)
    }

    /// `listSessions`, every page.
    pub async fn list_sessions(&self) -> Result<Vec<SessionSummary>, ClientError> {
        protocol::all_sessions(|req| self.call(req, true)).await
    }

    /// Sends a text message: end-to-end encrypted when the client has
    /// [`ClientConfig::encryption`] (the chat's room key is shared first with every member
    /// device that lacks it), else as made by [`crate::payload::encode`].
    ///
    /// A member device whose identity key changed fails the send with
    /// [`ClientError::Crypto`] ([`CryptoError::IdentityChanged`]) before anything is sent.
    pub async fn send_text(
        &self,
        session_id: &str,
        text: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send_content(
            session_id,
            MessageKind::Text,
            &crate::content::Content::text(text).encode(),
            Vec::new(),
        )
        .await
    }

    /// Sends a reply, a reaction or an edit ([`crate::content::Content`]): end-to-end encrypted
    /// inside a `text` message, so the server cannot tell it from any other.
    pub async fn send_rich(
        &self,
        session_id: &str,
        content: &crate::content::Content,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send_content(session_id, MessageKind::Text, &content.encode(), Vec::new())
            .await
    }

    /// Sends `content` as a message of `kind` with `attachments`: end-to-end encrypted when
    /// the client has encryption, else as is (text and media descriptors alike).
    pub(crate) async fn send_content(
        &self,
        session_id: &str,
        kind: MessageKind,
        content: &str,
        attachments: Vec<String>,
    ) -> Result<protocol::SentMessage, ClientError> {
        let payload = match self.inner.e2ee.clone() {
            None => crate::payload::encode(content),
            Some(e2ee) => {
                self.keys_published().await;
                let members = self.members(session_id).await?;
                e2ee.encrypt_for(self, session_id, &members, content)
                    .await?
            }
        };
        self.send(NewMessage {
            session_id: session_id.to_owned(),
            kind,
            payload,
            attachments,
            client_msg_id: None,
        })
        .await
    }

    /// Waits (at most one request timeout) until this connection's keys were published (or
    /// publishing failed: see [`Event::Error`]). Sends wait for it by themselves.
    pub async fn keys_published(&self) {
        let mut rx = self.inner.published.subscribe();
        let _ = tokio::time::timeout(self.inner.config.request_timeout, rx.wait_for(|p| *p)).await;
    }

    /// The member user ids of a chat: a group's from `getGroup`, a direct chat's from the
    /// sessions list.
    pub async fn members(&self, session_id: &str) -> Result<Vec<String>, ClientError> {
        if session_id.starts_with("g_") {
            let g = self.get_group(session_id).await?;
            return Ok(g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["userId"].as_str().map(str::to_owned))
                .collect());
        }
        let known = {
            let st = self.inner.state.lock().unwrap();
            st.sessions.get(session_id).map(|s| s.members.clone())
        };
        if let Some(members) = known.filter(|m| !m.is_empty()) {
            return Ok(members);
        }
        let sessions = self.list_sessions().await?;
        let mut st = self.inner.state.lock().unwrap();
        for s in &sessions {
            st.sessions
                .entry(s.session_id.clone())
                .or_insert_with(|| s.clone());
        }
        sessions
            .into_iter()
            .find(|s| s.session_id == session_id)
            .map(|s| s.members)
            .ok_or_else(|| ClientError::Unexpected {
                status: 0,
                body: format!("session {session_id} is not among this user's sessions"),
            })
    }

    /// Whether messages are end-to-end encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.inner.e2ee.is_some()
    }

    /// Reads and handles this device's queue now, without syncing the chats: room keys, and a
    /// history bundle from the primary device ([`Event::HistorySynced`]).
    pub async fn read_device_queue(&self) -> Result<(), ClientError> {
        let session = self
            .session(Instant::now() + self.inner.config.request_timeout)
            .await?;
        self.inner.drain_device_queue(&session).await
    }

    pub(crate) fn e2ee(&self) -> Result<&Arc<E2ee>, ClientError> {
        self.inner
            .e2ee
            .as_ref()
            .ok_or_else(|| ClientError::Store("end-to-end encryption is not configured".into()))
    }

    /// The safety number with `user_id` and both sides' device fingerprints.
    pub async fn safety(&self, user_id: &str) -> Result<SafetyInfo, ClientError> {
        self.e2ee()?.safety(self, user_id).await
    }

    /// Whether every device of `user_id` presents the identity key pinned for it (false after
    /// an [`Event::IdentityChanged`], until [`Client::accept_identity`]).
    pub async fn is_trusted(&self, user_id: &str) -> Result<bool, ClientError> {
        self.e2ee()?.is_trusted(self, user_id).await
    }

    /// Trusts the identity keys `user_id`'s devices present now (after a reported change);
    /// room keys from them are accepted from then on. Returns how many devices were pinned.
    pub async fn accept_identity(&self, user_id: &str) -> Result<usize, ClientError> {
        let n = self.e2ee()?.accept_identity(self, user_id).await?;
        // Device messages left in the queue because of the change are read now.
        self.request_sync();
        Ok(n)
    }

    /// `uploadKeys`: how many unclaimed one-time keys this device has now. (An encrypting
    /// client publishes its keys by itself on every connect.)
    pub async fn upload_keys(
        &self,
        identity_key: &str,
        signing_key: &str,
        one_time_keys: &[crate::crypto::OneTimeKey],
        fallback_key: Option<&crate::crypto::OneTimeKey>,
    ) -> Result<u32, ClientError> {
        let req = protocol::upload_keys(identity_key, signing_key, one_time_keys, fallback_key);
        let r = self.call(req, true).await?;
        Ok(r["oneTimeKeyCount"].as_u64().unwrap_or(0) as u32)
    }

    /// `claimKeys` (not retried: a lost reply used up one-time keys, and a retry claims new ones
    /// anyway).
    pub async fn claim_keys(
        &self,
        user_id: &str,
        device_ids: Option<&[String]>,
    ) -> Result<Vec<protocol::KeyBundle>, ClientError> {
        e2ee::claim_keys(self, user_id, device_ids).await
    }

    /// `listDevices`.
    pub async fn list_devices(
        &self,
        user_ids: &[String],
    ) -> Result<Vec<protocol::UserDevice>, ClientError> {
        e2ee::list_devices(self, user_ids).await
    }

    /// `removeDevice`.
    pub async fn remove_device(&self, device_id: &str) -> Result<(), ClientError> {
        self.call(protocol::remove_device(device_id), true)
            .await
            .map(drop)
    }

    /// `approveDeviceLink` (from the primary device): the device linked.
    pub async fn approve_device_link(
        &self,
        code: &str,
    ) -> Result<protocol::LinkedDevice, ClientError> {
        protocol::parse(
            self.call(protocol::approve_device_link(code), false)
                .await?,
        )
    }

    /// `sendToDevice` (1 to 100 messages).
    pub async fn send_to_device(
        &self,
        messages: &[protocol::OutgoingDeviceMessage],
    ) -> Result<protocol::SendToDeviceResult, ClientError> {
        e2ee::send_to_device(self, messages).await
    }

    /// `readDeviceMessages` (an encrypting client reads its queue by itself).
    pub async fn read_device_messages(
        &self,
        limit: Option<u32>,
    ) -> Result<protocol::DeviceMessagesPage, ClientError> {
        e2ee::read_device_messages(self, limit).await
    }

    /// `ackDeviceMessages`: how many were removed from the queue.
    pub async fn ack_device_messages(&self, ids: &[String]) -> Result<u64, ClientError> {
        e2ee::ack_device_messages(self, ids).await
    }

    /// `sendMessage` with a payload already encoded.
    pub async fn send_message(
        &self,
        session_id: &str,
        kind: protocol::MessageKind,
        payload: &str,
    ) -> Result<protocol::SentMessage, ClientError> {
        self.send(NewMessage {
            session_id: session_id.to_owned(),
            kind,
            payload: payload.to_owned(),
            attachments: Vec::new(),
            client_msg_id: None,
        })
        .await
    }

    /// `sendMessage`, retried on the same `clientMsgId` (generated here unless given) until a
    /// reply or a non-retryable error. The message is recorded as seen, so a sync does not
    /// emit it back.
    ///
    /// Sends to one session go out one at a time, in the order they were called: the next
    /// waits for the previous one's reply (or final failure). API Gateway runs the frames of a
    /// connection concurrently, so two `sendMessage` frames in flight at once could be stored
    /// in either order; waiting is what keeps a sender's order (docs/protocol.md). Sends to
    /// different sessions still overlap.
    pub async fn send(&self, message: NewMessage) -> Result<protocol::SentMessage, ClientError> {
        let _turn = self.inner.send_order.turn(&message.session_id).await;
        let cid = message
            .client_msg_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.inner.state.lock().unwrap().tracker.sending(&cid);
        let result = self
            .call(protocol::send_message(&message, &cid), true)
            .await
            .and_then(protocol::parse::<protocol::SentMessage>);
        let unblocked = {
            let mut st = self.inner.state.lock().unwrap();
            let st = &mut *st;
            let mut unblocked = false;
            if let Ok(sent) = &result {
                let out = st
                    .tracker
                    .note_own(&message.session_id, sent.seq, &sent.msg_id);
                unblocked = !out.emit.is_empty();
                self.inner.emit_revealed(st, out.emit);
            }
            st.tracker.sent(&cid);
            unblocked
        };
        if unblocked {
            self.inner.ack_cursor(&message.session_id);
        }
        result
    }

    /// `readNewMessages` (direct access; the client's own sync does this by itself).
    pub async fn read_new_messages(
        &self,
        session_id: &str,
        last_msg_id: Option<&str>,
        limit: Option<u32>,
    ) -> Result<protocol::MessagesPage, ClientError> {
        let req = protocol::read_new_messages(session_id, last_msg_id, limit);
        protocol::parse(self.call(req, true).await?)
    }

    /// `ackMessages`: whether the watermark moved.
    pub async fn ack(
        &self,
        session_id: &str,
        msg_id: &str,
        status: Receipt,
    ) -> Result<bool, ClientError> {
        let r = self
            .call(protocol::ack(session_id, msg_id, status), true)
            .await?;
        Ok(protocol::field_bool(&r, "moved"))
    }

    /// `getMessageStatus`.
    pub async fn get_message_status(
        &self,
        msg_id: &str,
    ) -> Result<protocol::MessageStatus, ClientError> {
        protocol::parse(
            self.call(protocol::get_message_status(msg_id), true)
                .await?,
        )
    }

    /// `getProfile`: another user's profile as its privacy settings let this user see it.
    pub async fn get_profile(
        &self,
        user_id: &str,
    ) -> Result<courier_core::protocol::Profile, ClientError> {
        protocol::parse(self.call(protocol::get_profile(user_id), true).await?)
    }

    /// `updateSettings`: the settings after the change.
    pub async fn update_settings(
        &self,
        params: &courier_core::protocol::UpdateSettingsParams,
    ) -> Result<courier_core::settings::Settings, ClientError> {
        protocol::parse(self.call(protocol::update_settings(params), true).await?)
    }

    /// `updateContacts`: the number of contacts after the change.
    pub async fn update_contacts(
        &self,
        add: &[String],
        remove: &[String],
    ) -> Result<usize, ClientError> {
        let r: courier_core::protocol::ContactsCount = protocol::parse(
            self.call(protocol::update_contacts(add, remove), true)
                .await?,
        )?;
        Ok(r.count)
    }

    /// `blockUser` (`block`) or `unblockUser`: whether the user is blocked now.
    pub async fn block_user(&self, user_id: &str, block: bool) -> Result<bool, ClientError> {
        let r: courier_core::protocol::BlockReply = protocol::parse(
            self.call(protocol::block_user(user_id, block), true)
                .await?,
        )?;
        Ok(r.blocked)
    }

    /// `listBlocked`: everyone this user blocked.
    pub async fn list_blocked(&self) -> Result<Vec<String>, ClientError> {
        let r: courier_core::protocol::BlockedList =
            protocol::parse(self.call(protocol::list_blocked(), true).await?)?;
        Ok(r.user_ids)
    }

    /// `reportUser`: reports a user (with up to 5 of their messages, as this device decrypted
    /// them) and blocks them; the report's id.
    pub async fn report_user(
        &self,
        user_id: &str,
        messages: Vec<courier_core::protocol::ReportedMessage>,
    ) -> Result<String, ClientError> {
        let r: courier_core::protocol::ReportFiled = protocol::parse(
            self.call(protocol::report_user(user_id, messages), false)
                .await?,
        )?;
        Ok(r.report_id)
    }

    /// `deleteMessage`: deletes one of this user's messages for everyone, within 48 hours of
    /// sending it (`FORBIDDEN` after, or for someone else's). Safe to retry.
    pub async fn delete_message(&self, session_id: &str, msg_id: &str) -> Result<(), ClientError> {
        self.call(protocol::delete_message(session_id, msg_id), true)
            .await
            .map(drop)
    }

    /// `setDisappearingTimer`: messages sent in the chat from now on disappear after `seconds`
    /// (0: off; 86,400, 604,800 or 7,776,000; in a group only an admin may). Safe to retry
    /// (setting the timer the chat has changes nothing). Returns the timer now in force.
    pub async fn set_disappearing_timer(
        &self,
        session_id: &str,
        seconds: u32,
    ) -> Result<u32, ClientError> {
        let v = self
            .call(protocol::set_disappearing_timer(session_id, seconds), true)
            .await?;
        let r: courier_core::protocol::DisappearingTimerSet = protocol::parse(v)?;
        Ok(r.seconds)
    }

    /// `sendTyping`: tells the chat's other members (those online, whom this user's `lastSeen`
    /// setting shows presence to) that this user started or stopped typing. Not retried: a late
    /// notice is a wrong one.
    pub async fn send_typing(&self, session_id: &str, typing: bool) -> Result<(), ClientError> {
        self.call(protocol::send_typing(session_id, typing), false)
            .await
            .map(drop)
    }

    /// `registerPushToken`.
    pub async fn register_push_token(
        &self,
        platform: protocol::PushPlatform,
        token: &str,
    ) -> Result<(), ClientError> {
        let req = protocol::register_push_token(platform, token);
        self.call(req, true).await.map(drop)
    }

    /// `deleteAccount` (not retried). On success the client stops, as the server closes every
    /// connection of the account.
    pub async fn delete_account(&self) -> Result<(), ClientError> {
        self.call(protocol::delete_account(), false).await?;
        self.close().await;
        Ok(())
    }

    /// `setRegistrationPin`: two-step verification; re-registering the number will need `pin`
    /// (six digits). The primary needs no `current_pin`; a companion changes an existing PIN
    /// only with it (`PIN_REQUIRED` without, `WRONG_PIN` when wrong, `FORBIDDEN` when the
    /// account has none). Retried after a lost reply only without `current_pin`: once the PIN
    /// changed, the old one would be a wrong try.
    pub async fn set_registration_pin(
        &self,
        pin: &str,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        let req = protocol::set_registration_pin(pin, current_pin);
        self.call(req, current_pin.is_none()).await.map(drop)
    }

    /// `removeRegistrationPin`: two-step verification off; from a companion only with
    /// `current_pin` (as [`Self::set_registration_pin`]).
    pub async fn remove_registration_pin(
        &self,
        current_pin: Option<&str>,
    ) -> Result<(), ClientError> {
        let req = protocol::remove_registration_pin(current_pin);
        self.call(req, current_pin.is_none()).await.map(drop)
    }

    /// `checkRegistrationPin`: whether `pin` is the account's registration PIN (any device; the
    /// reminder that keeps the user remembering it). `NOT_FOUND` when the account has none;
    /// wrong PINs count against the account's daily budget (`LIMIT_EXCEEDED` past it), so not
    /// retried after a lost reply.
    pub async fn check_registration_pin(&self, pin: &str) -> Result<bool, ClientError> {
        let r = self
            .call(protocol::check_registration_pin(pin), false)
            .await?;
        Ok(r["correct"] == serde_json::Value::Bool(true))
    }
}

/// Status posts.
impl Client {
    /// `postStatus`: returns `(statusId, expiresAt)`. With end-to-end encryption the text is
    /// encrypted once for the audience (`getStatusAudience`, every page) and this user's other
    /// devices. Not retried after a lost reply (a retry would post it twice).
    pub async fn post_status(
        &self,
        text: &str,
        attachments: &[String],
    ) -> Result<(String, String), ClientError> {
        let payload = match self.inner.e2ee.clone() {
            Some(e2ee) => {
                self.keys_published().await;
                let audience = self.status_audience().await?;
                e2ee.encrypt_status(self, &audience, text).await?
            }
            None => crate::payload::encode(text),
        };
        let r = self
            .call(protocol::post_status(&payload, attachments), false)
            .await?;
        Ok((
            protocol::field_str(&r, "statusId")?,
            protocol::field_str(&r, "expiresAt")?,
        ))
    }

    /// `getStatusAudience`, every page: who may see this user's statuses (its contacts, or
    /// nobody).
    pub async fn status_audience(&self) -> Result<Vec<String>, ClientError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let r = self
                .call(
                    protocol::status_audience(out.last().map(String::as_str)),
                    true,
                )
                .await?;
            let page: Vec<String> = protocol::parse(r["userIds"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `viewStatus`, every page: the user's live statuses this user may see, oldest first,
    /// each with its `text` when it could be decrypted (a key that has not arrived yet is
    /// looked for once in this device's queue).
    pub async fn view_status(
        &self,
        user_id: &str,
    ) -> Result<Vec<protocol::StatusPost>, ClientError> {
        let mut out: Vec<protocol::StatusPost> = Vec::new();
        loop {
            let after = out.last().map(|s| s.status_id.clone());
            let r = self
                .call(protocol::view_status(user_id, after.as_deref()), true)
                .await?;
            let page: Vec<protocol::StatusPost> = protocol::parse(r["statuses"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                break;
            }
        }
        let Some(e2ee) = self.inner.e2ee.clone() else {
            for s in &mut out {
                s.text = crate::payload::decode(&s.payload);
            }
            return Ok(out);
        };
        let mut drained = false;
        for s in &mut out {
            let mut result = e2ee.decrypt_status(s);
            if matches!(result, Err(CryptoError::UnknownSession { .. })) && !drained {
                drained = true;
                let session = self
                    .session(Instant::now() + self.inner.config.request_timeout)
                    .await?;
                self.inner.drain_device_queue(&session).await?;
                result = e2ee.decrypt_status(s);
            }
            match result {
                Ok(text) => s.text = Some(text),
                Err(e) => tracing::debug!(status_id = s.status_id, "status not decrypted: {e}"),
            }
        }
        Ok(out)
    }

    /// `getStatusViewers`, every page: who viewed one of this user's statuses, and when first.
    pub async fn status_viewers(
        &self,
        status_id: &str,
    ) -> Result<Vec<protocol::StatusViewer>, ClientError> {
        let mut out: Vec<protocol::StatusViewer> = Vec::new();
        loop {
            let after = out.last().map(|v| v.user_id.clone());
            let r = self
                .call(protocol::status_viewers(status_id, after.as_deref()), true)
                .await?;
            let page: Vec<protocol::StatusViewer> = protocol::parse(r["viewers"].clone())?;
            let done = page.is_empty() || !protocol::field_bool(&r, "hasMore");
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// `removeStatus`.
    pub async fn remove_status(&self, status_id: &str) -> Result<(), ClientError> {
        self.call(protocol::remove_status(status_id), true)
            .await
            .map(drop)
    }
}
