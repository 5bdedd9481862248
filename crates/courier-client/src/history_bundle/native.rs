//! The networked side of history bundles: uploading and offering one, and fetching and
//! importing one (see the [parent module](super)).

use super::*;
use crate::client::Client;
use crate::e2ee::Caller;
use crate::history::HistoryStore;
use crate::protocol::Request;
use std::path::Path;

/// What [`Client::send_history`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Messages in the bundle.
    pub messages: u64,
    /// Chats in the bundle.
    pub chats: u64,
    /// The uploads, one per part (attached to nothing: S3's lifecycle rule removes them a
    /// day later).
    pub media_ids: Vec<String>,
}

/// Downloads an offer's parts (through `c`'s `getMediaDownload`), opens the bundle
/// ([`open`]) and merges it into the history in `dir`. Nothing is written unless the whole
/// bundle checks out.
pub async fn import(
    c: &impl Caller,
    offer: &HistoryOffer,
    user_id: &str,
    dir: &Path,
) -> Result<Imported, ClientError> {
    offer.check()?;
    let mut ciphertexts = Vec::with_capacity(offer.parts.len());
    for part in &offer.parts {
        let req = Request::new(
            "getMediaDownload",
            &courier_core::protocol::GetMediaDownloadParams {
                media_id: part.media_id.clone(),
            },
        );
        let url = crate::protocol::field_str(&c.call(req).await?, "downloadUrl")?;
        ciphertexts.push(media::download_bytes(&url, part.size + media::TAG_BYTES, None).await?);
    }
    let entries = open(offer, user_id, &ciphertexts)?;
    let (messages, chats) = (entries.len(), super::chats(&entries) as usize);
    let added = HistoryStore::open(dir)
        .and_then(|h| h.record(entries))
        .map_err(|e| ClientError::Store(e.to_string()))?;
    Ok(Imported {
        messages,
        chats,
        added,
    })
}

impl Client {
    /// Whether this account's device `device_id` has published its keys (so a history
    /// bundle can be sent to it).
    pub async fn own_device_ready(&self, device_id: &str) -> Result<bool, ClientError> {
        let me = self.e2ee()?.user_id();
        let listed = self.list_devices(std::slice::from_ref(&me)).await?;
        Ok(listed
            .iter()
            .any(|d| d.user_id == me && d.device_id == device_id && d.identity_key.is_some()))
    }

    /// Uploads a sealed bundle's parts (each as media of its own, the ciphertext moved out) and
    /// names each part's upload in its descriptor, ready for [`Sealed::offer`].
    pub async fn upload_bundle(&self, sealed: &mut Sealed) -> Result<(), ClientError> {
        for (ciphertext, part) in &mut sealed.parts {
            let upload = self
                .create_media_upload(media::UPLOAD_CONTENT_TYPE, ciphertext.len() as u64)
                .await?;
            media::upload_bytes(&upload, std::mem::take(ciphertext), None).await?;
            part.media_id = upload.media_id;
        }
        Ok(())
    }

    /// Sends this device's history (`entries`, as [`crate::history::HistoryStore::load`]
    /// gives them) to the account's device `device_id` as a bundle: selected and encrypted
    /// ([`seal`]), uploaded, then offered by an Olm device message. Fails with
    /// [`ClientError::Media`] if the device has no keys yet (it has not connected since it
    /// was linked).
    pub async fn send_history(
        &self,
        device_id: &str,
        entries: &[HistoryEntry],
        limits: &Limits,
    ) -> Result<Sent, ClientError> {
        let e2ee = self.e2ee()?.clone();
        if !self.own_device_ready(device_id).await? {
            return Err(bundle_err(format!(
                "device {device_id} has not published its keys yet"
            )));
        }
        let mut sealed = seal(&e2ee.user_id(), entries, Utc::now(), limits)?;
        self.upload_bundle(&mut sealed).await?;
        let offer = serde_json::to_vec(&sealed.offer()).expect("an offer serialises");
        if !e2ee.send_to_own_device(self, device_id, &offer).await? {
            return Err(bundle_err(format!(
                "device {device_id} could not be reached (no keys or no one-time key)"
            )));
        }
        Ok(Sent {
            messages: sealed.messages,
            chats: sealed.chats,
            media_ids: sealed
                .parts
                .iter()
                .map(|(_, p)| p.media_id.clone())
                .collect(),
        })
    }
}
