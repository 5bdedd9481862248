//! Media files: encrypted on the device before they leave it, so the server and S3 only ever
//! hold ciphertext.
//!
//! Sending: a fresh random 256-bit key and 96-bit nonce encrypt the file with AES-256-GCM; the
//! ciphertext goes to S3 through the presigned `PUT` of `createMediaUpload` (declared as
//! `application/octet-stream`: the real type travels only inside the encrypted message); then a
//! `media` message attaches the media id and carries a [`MediaPayload`] (key, nonce, SHA-256 of
//! the ciphertext, size, type, name, caption), which the chat's end-to-end encryption encrypts
//! like any text. Receiving: `getMediaDownload`, download, check the digest, then decrypt.

use crate::ClientError;
#[cfg(feature = "native")]
use crate::client::Client;
use crate::protocol::{Message, MessageKind};
#[cfg(feature = "native")]
use crate::protocol::{Request, SentMessage};
use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Largest upload the server accepts (16 MiB of ciphertext).
pub const MAX_UPLOAD_BYTES: u64 = courier_core::media::MAX_MEDIA_BYTES;
/// AES-GCM's tag: the ciphertext is this much longer than the file.
pub const TAG_BYTES: u64 = 16;
/// Largest file that can be sent.
pub const MAX_FILE_BYTES: u64 = MAX_UPLOAD_BYTES - TAG_BYTES;
/// What the server is told the object is: it must not learn the real type.
pub const UPLOAD_CONTENT_TYPE: &str = "application/octet-stream";
/// The descriptor's format version.
pub const PAYLOAD_VERSION: u32 = 1;
#[cfg(feature = "native")]
/// Size of upload chunks, each reported to the progress callback.
const CHUNK_BYTES: usize = 64 * 1024;

/// Called with (bytes transferred, total) as an upload or download proceeds.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What a `media` message carries (inside its end-to-end encrypted payload): all a recipient
/// needs to fetch, check and decrypt the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaPayload {
    /// Format version ([`PAYLOAD_VERSION`]).
    pub v: u32,
    /// Always `media`.
    pub t: String,
    /// The media id to download.
    pub media_id: String,
    /// The AES-256 key, base64.
    pub key: String,
    /// The AES-GCM nonce, base64.
    pub nonce: String,
    /// SHA-256 of the ciphertext, hex: checked before decrypting.
    pub sha256: String,
    /// Size of the file (plaintext), bytes.
    pub size: u64,
    /// The file's real content type.
    pub content_type: String,
    /// The file's name, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// A caption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

impl MediaPayload {
    /// Reads a descriptor from a message's decrypted content; `None` if it is not one.
    pub fn parse(content: &str) -> Option<Self> {
        serde_json::from_str::<Self>(content)
            .ok()
            .filter(|p| p.t == "media" && p.v == PAYLOAD_VERSION)
    }

    /// The descriptor of a received `media` message (read by the [`Client`]: decrypted when
    /// end-to-end encryption is on).
    pub fn from_message(m: &Message) -> Option<Self> {
        if m.kind != MessageKind::Media {
            return None;
        }
        m.text.as_deref().and_then(Self::parse)
    }
}

/// A file to send.
#[derive(Debug, Clone, Default)]
pub struct OutgoingFile {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// Its content type (kept inside the encrypted message).
    pub content_type: String,
    /// Its name.
    pub file_name: Option<String>,
    /// A caption.
    pub caption: Option<String>,
}

/// A file encrypted for upload.
pub struct Encrypted {
    /// What is uploaded.
    pub ciphertext: Vec<u8>,
    /// Key, base64.
    pub key: String,
    /// Nonce, base64.
    pub nonce: String,
    /// SHA-256 of the ciphertext, hex.
    pub sha256: String,
}

fn media_err(msg: impl Into<String>) -> ClientError {
    ClientError::Media(msg.into())
}

/// Encrypts a file with a fresh random key and nonce.
pub fn encrypt(plaintext: &[u8]) -> Result<Encrypted, ClientError> {
    let key = Key::<Aes256Gcm>::generate();
    let nonce = Nonce::generate();
    let ciphertext = Aes256Gcm::new(&key)
        .encrypt(&nonce, plaintext)
        .map_err(|_| media_err("encryption failed"))?;
    let sha256 = hex::encode(Sha256::digest(&ciphertext));
    Ok(Encrypted {
        key: B64.encode(key.as_slice()),
        nonce: B64.encode(nonce.as_slice()),
        sha256,
        ciphertext,
    })
}

/// Checks the ciphertext's digest, then decrypts it and checks the size.
pub fn decrypt(p: &MediaPayload, ciphertext: &[u8]) -> Result<Vec<u8>, ClientError> {
    if hex::encode(Sha256::digest(ciphertext)) != p.sha256.to_ascii_lowercase() {
        return Err(media_err(
            "the downloaded file does not match its digest (altered or truncated)",
        ));
    }
    let key = B64
        .decode(&p.key)
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| media_err("the message's media key is not a 256-bit key"))?;
    let nonce = B64
        .decode(&p.nonce)
        .ok()
        .filter(|n| n.len() == 12)
        .ok_or_else(|| media_err("the message's media nonce is not 96 bits"))?;
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| media_err("bad media key"))?;
    let nonce = Nonce::try_from(nonce.as_slice()).map_err(|_| media_err("bad media nonce"))?;
    let plain = cipher
        .decrypt(&nonce, ciphertext)
        .map_err(|_| media_err("the file could not be decrypted with the message's key"))?;
    if plain.len() as u64 != p.size {
        return Err(media_err(
            "the decrypted file does not have its declared size",
        ));
    }
    Ok(plain)
}

/// Reply to `createMediaUpload`: where and how to upload.
pub use courier_core::protocol::MediaUpload;

#[cfg(feature = "native")]
impl Client {
    /// `createMediaUpload`: a presigned upload for `size` bytes of `content_type`.
    pub async fn create_media_upload(
        &self,
        content_type: &str,
        size: u64,
    ) -> Result<MediaUpload, ClientError> {
        let req = Request::new(
            "createMediaUpload",
            &courier_core::protocol::CreateMediaUploadParams {
                content_type: content_type.into(),
                size,
            },
        );
        crate::protocol::parse(self.call(req, true).await?)
    }

    /// `getMediaDownload`: a presigned download URL (refused with `FORBIDDEN` unless this user
    /// uploaded the media or is in a chat it was sent to).
    pub async fn get_media_download(&self, media_id: &str) -> Result<String, ClientError> {
        let req = Request::new(
            "getMediaDownload",
            &courier_core::protocol::GetMediaDownloadParams {
                media_id: media_id.into(),
            },
        );
        crate::protocol::field_str(&self.call(req, true).await?, "downloadUrl")
    }

    /// Encrypts and uploads a file; returns the descriptor that lets a reader fetch, check and
    /// decrypt it (to be sent inside an end-to-end encrypted message or status). A file over
    /// [`MAX_FILE_BYTES`] is refused by the server (`PAYLOAD_TOO_LARGE`) before anything is
    /// uploaded.
    pub async fn upload_file(
        &self,
        file: OutgoingFile,
        progress: Option<Progress>,
    ) -> Result<MediaPayload, ClientError> {
        let enc = encrypt(&file.bytes)?;
        let upload = self
            .create_media_upload(UPLOAD_CONTENT_TYPE, enc.ciphertext.len() as u64)
            .await?;
        upload_bytes(&upload, enc.ciphertext, progress).await?;
        Ok(MediaPayload {
            v: PAYLOAD_VERSION,
            t: "media".into(),
            media_id: upload.media_id,
            key: enc.key,
            nonce: enc.nonce,
            sha256: enc.sha256,
            size: file.bytes.len() as u64,
            content_type: file.content_type,
            file_name: file.file_name,
            caption: file.caption,
        })
    }

    /// Encrypts and uploads a file, then sends it to the chat as a `media` message. Returns the
    /// sent message and the descriptor it carries.
    pub async fn send_file(
        &self,
        session_id: &str,
        file: OutgoingFile,
        progress: Option<Progress>,
    ) -> Result<(SentMessage, MediaPayload), ClientError> {
        let payload = self.upload_file(file, progress).await?;
        let content = serde_json::to_string(&payload).expect("a descriptor serialises");
        let sent = self
            .send_content(
                session_id,
                MessageKind::Media,
                &content,
                vec![payload.media_id.clone()],
            )
            .await?;
        Ok((sent, payload))
    }

    /// Encrypts and uploads a file, then posts it as a status (the descriptor is the status's
    /// end-to-end encrypted text; the media id is its attachment, so whoever may see the status
    /// may download the ciphertext). Returns `(statusId, expiresAt)` and the descriptor.
    pub async fn post_status_file(
        &self,
        file: OutgoingFile,
        progress: Option<Progress>,
    ) -> Result<(String, String, MediaPayload), ClientError> {
        let payload = self.upload_file(file, progress).await?;
        let content = serde_json::to_string(&payload).expect("a descriptor serialises");
        let (id, expires) = self
            .post_status(&content, std::slice::from_ref(&payload.media_id))
            .await?;
        Ok((id, expires, payload))
    }

    /// Downloads a received file, checks its digest and decrypts it.
    pub async fn download_file(
        &self,
        media: &MediaPayload,
        progress: Option<Progress>,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.get_media_download(&media.media_id).await?;
        let ciphertext = download_bytes(&url, media.size + TAG_BYTES, progress).await?;
        decrypt(media, &ciphertext)
    }
}

#[cfg(feature = "native")]
fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[cfg(feature = "native")]
/// Uploads `body` with the presigned request, reporting progress per chunk.
pub async fn upload_bytes(
    upload: &MediaUpload,
    body: Vec<u8>,
    progress: Option<Progress>,
) -> Result<(), ClientError> {
    let total = body.len() as u64;
    let method = reqwest::Method::from_bytes(upload.upload_method.as_bytes())
        .map_err(|_| media_err("the upload method is not an HTTP method"))?;
    let chunks: Vec<Vec<u8>> = body.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
    let mut sent = 0u64;
    let stream = futures_util::stream::iter(chunks.into_iter().map(move |c| {
        sent += c.len() as u64;
        if let Some(p) = &progress {
            p(sent, total);
        }
        Ok::<_, std::io::Error>(c)
    }));
    let mut req = http()
        .request(method, &upload.upload_url)
        .body(reqwest::Body::wrap_stream(stream));
    let mut has_length = false;
    for (k, v) in &upload.upload_headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        req = req.header(k, v);
    }
    if !has_length {
        req = req.header("content-length", total);
    }
    let res = req
        .send()
        .await
        .map_err(|e| ClientError::Transport(format!("upload: {e}")))?;
    if !res.status().is_success() {
        return Err(media_err(format!(
            "the upload was refused (HTTP {})",
            res.status().as_u16()
        )));
    }
    Ok(())
}

#[cfg(feature = "native")]
/// Downloads at most `limit` bytes from `url`, reporting progress per chunk.
pub async fn download_bytes(
    url: &str,
    limit: u64,
    progress: Option<Progress>,
) -> Result<Vec<u8>, ClientError> {
    let mut res = http()
        .get(url)
        .send()
        .await
        .map_err(|e| ClientError::Transport(format!("download: {e}")))?;
    if !res.status().is_success() {
        return Err(media_err(format!(
            "the download was refused (HTTP {})",
            res.status().as_u16()
        )));
    }
    let total = res.content_length().unwrap_or(limit).min(limit);
    let mut body = Vec::with_capacity(total as usize);
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| ClientError::Transport(format!("download: {e}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > limit {
            return Err(media_err(
                "the download is larger than the file it should be",
            ));
        }
        if let Some(p) = &progress {
            p(body.len() as u64, total);
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(e: &Encrypted, size: u64) -> MediaPayload {
        MediaPayload {
            v: 1,
            t: "media".into(),
            media_id: "m_0123456789abcdef0123456789abcdef".into(),
            key: e.key.clone(),
            nonce: e.nonce.clone(),
            sha256: e.sha256.clone(),
            size,
            content_type: "image/png".into(),
            file_name: Some("a.png".into()),
            caption: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_altered_ciphertext() {
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let e = encrypt(&plain).unwrap();
        assert_eq!(e.ciphertext.len() as u64, plain.len() as u64 + TAG_BYTES);
        assert!(!e.ciphertext.windows(64).any(|w| w == &plain[1000..1064]));
        let p = payload(&e, plain.len() as u64);
        assert_eq!(decrypt(&p, &e.ciphertext).unwrap(), plain);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(MediaPayload::parse(&text), Some(p.clone()));
        assert_eq!(MediaPayload::parse("hello"), None);

        let mut altered = e.ciphertext.clone();
        altered[10] ^= 1;
        assert!(matches!(decrypt(&p, &altered), Err(ClientError::Media(_))));
        assert!(matches!(
            decrypt(&p, &e.ciphertext[..100]),
            Err(ClientError::Media(_))
        ));
        // A fresh key every time: the same file never encrypts the same.
        let again = encrypt(&plain).unwrap();
        assert_ne!(again.key, e.key);
        assert_ne!(again.ciphertext, e.ciphertext);
        // The right digest with the wrong key fails too.
        let mut wrong = p.clone();
        wrong.key = again.key;
        assert!(matches!(
            decrypt(&wrong, &e.ciphertext),
            Err(ClientError::Media(_))
        ));
    }
}
