//! User backups: the device's history, the Megolm room keys it holds and its cursors, packed
//! into one file encrypted with a key derived from a passphrase, and moved to and from the
//! server's bucket through presigned URLs. The server only ever sees the ciphertext and its
//! size. Never in a backup: the device's own Olm identity (a restored device has its own).
//!
//! File format (version 1), all integers little-endian:
//!
//! ```text
//! "CBAK" | version u8 = 1 | flags u8 = 0 (uncompressed JSON)
//!        | argon2id m_cost u32 (KiB) = 65536 | t_cost u32 = 3 | p_cost u32 = 1
//!        | salt [16] | nonce [12]
//!        | AES-256-GCM(key = Argon2id(passphrase, salt), nonce, JSON, aad = the 46 header bytes)
//! ```
//!
//! A wrong passphrase and a damaged file are indistinguishable by design (GCM's tag fails
//! either way): both are [`BackupError::WrongPassphrase`].

use crate::ClientError;
use crate::client::Client;
use crate::crypto::ExportedRoomKey;
use crate::cursors::Cursors;
use crate::history::HistoryEntry;
use crate::protocol;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"CBAK";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 1 + 12 + 16 + 12;
/// Argon2id memory cost in KiB (64 MiB), iterations and lanes used for new backups.
pub const KDF_PARAMS: (u32, u32, u32) = (64 * 1024, 3, 1);
/// The most a backup file may ask for (a damaged or hostile header must not exhaust memory).
const MAX_M_COST: u32 = 1024 * 1024;
const MAX_T_COST: u32 = 10;
const MAX_P_COST: u32 = 8;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupContents {
    /// The account it belongs to (a backup restores only onto a device of the same account).
    pub user_id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// The message history, in (session, seq) order.
    pub history: Vec<HistoryEntry>,
    /// The Megolm inbound sessions, exported at their first known index.
    pub room_keys: Vec<ExportedRoomKey>,
    /// What the device had seen, per session.
    pub cursors: Cursors,
}

/// Why a backup could not be made, found or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The passphrase is wrong, or the file is damaged (the two cannot be told apart).
    #[error("wrong passphrase or damaged backup")]
    WrongPassphrase,
    /// A backup file of a newer format.
    #[error("unsupported backup version {0}")]
    UnsupportedVersion(u8),
    /// The backup is of another account.
    #[error("this backup belongs to another account")]
    OtherAccount,
    /// The account has no backup (or not the one asked for).
    #[error("no backup found")]
    NotFound,
    /// The server refused or failed a request.
    #[error("server: {0}")]
    Client(#[from] ClientError),
    /// Uploading or downloading the file failed.
    #[error("transfer: {0}")]
    Transfer(String),
}

fn derive_key(
    passphrase: &[u8],
    salt: &[u8],
    (m, t, p): (u32, u32, u32),
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let params =
        argon2::Params::new(m, t, p, Some(32)).map_err(|_| BackupError::WrongPassphrase)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, key.as_mut_slice())
        .map_err(|_| BackupError::WrongPassphrase)?;
    Ok(key)
}

/// Encrypts `contents` under `passphrase` into a backup file.
pub fn seal(contents: &BackupContents, passphrase: &str) -> Result<Vec<u8>, BackupError> {
    // rand's thread RNG is a CSPRNG seeded from the OS.
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let (m, t, p) = KDF_PARAMS;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.push(0);
    for v in [m, t, p] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);
    let key = derive_key(passphrase.as_bytes(), &salt, KDF_PARAMS)?;
    let plaintext = Zeroizing::new(serde_json::to_vec(contents).expect("contents serialize"));
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("a 32-byte key");
    let nonce = Nonce::try_from(&nonce[..]).expect("a 12-byte nonce");
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: &header,
            },
        )
        .map_err(|_| BackupError::Transfer("encryption failed".into()))?;
    header.extend_from_slice(&ciphertext);
    Ok(header)
}

/// Decrypts a backup file with `passphrase`.
pub fn open(file: &[u8], passphrase: &str) -> Result<BackupContents, BackupError> {
    if file.len() < HEADER_LEN || &file[..4] != MAGIC {
        return Err(BackupError::WrongPassphrase);
    }
    let (header, ciphertext) = file.split_at(HEADER_LEN);
    if header[4] != VERSION {
        return Err(BackupError::UnsupportedVersion(header[4]));
    }
    if header[5] != 0 {
        return Err(BackupError::WrongPassphrase);
    }
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let params = (u32_at(6), u32_at(10), u32_at(14));
    if params.0 > MAX_M_COST || params.1 > MAX_T_COST || params.2 > MAX_P_COST {
        return Err(BackupError::WrongPassphrase);
    }
    let salt = &header[18..34];
    let nonce = Nonce::try_from(&header[34..46]).map_err(|_| BackupError::WrongPassphrase)?;
    let key = derive_key(passphrase.as_bytes(), salt, params)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("a 32-byte key");
    let plaintext = Zeroizing::new(
        cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .map_err(|_| BackupError::WrongPassphrase)?,
    );
    serde_json::from_slice(&plaintext).map_err(|_| BackupError::WrongPassphrase)
}

/// A backup the server lists.
pub use courier_core::protocol::BackupEntry as BackupInfo;

fn transfer(e: impl std::fmt::Display) -> BackupError {
    BackupError::Transfer(e.to_string())
}

fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    reply: &serde_json::Value,
    url_field: &str,
    headers_field: &str,
) -> Result<reqwest::RequestBuilder, BackupError> {
    let url = reply[url_field]
        .as_str()
        .ok_or_else(|| transfer(format!("the reply has no {url_field}")))?;
    let mut req = http.request(method, url);
    if let Some(h) = reply[headers_field].as_object() {
        for (k, v) in h {
            // reqwest sets these itself from the body and the URL.
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("host") {
                continue;
            }
            if let Some(v) = v.as_str() {
                req = req.header(k.as_str(), v);
            }
        }
    }
    Ok(req)
}

impl Client {
    /// `createBackup`, the upload of `file` to the presigned URL, then `listBackups` (which
    /// marks it complete). Returns the backup as listed.
    pub async fn upload_backup(&self, file: Vec<u8>) -> Result<BackupInfo, BackupError> {
        let reply = self
            .call(protocol::create_backup(file.len() as u64), false)
            .await?;
        let id = reply["backupId"].as_str().unwrap_or_default().to_owned();
        let resp = request(
            &reqwest::Client::new(),
            reqwest::Method::PUT,
            &reply,
            "uploadUrl",
            "uploadHeaders",
        )?
        .body(file)
        .send()
        .await
        .map_err(transfer)?;
        if !resp.status().is_success() {
            return Err(transfer(format!("upload: HTTP {}", resp.status())));
        }
        self.list_backups()
            .await?
            .into_iter()
            .find(|b| b.backup_id == id)
            .ok_or(BackupError::NotFound)
    }

    /// `listBackups`: the account's uploaded backups, newest first.
    pub async fn list_backups(&self) -> Result<Vec<BackupInfo>, BackupError> {
        let reply = self.call(protocol::list_backups(), true).await?;
        serde_json::from_value(reply["backups"].clone()).map_err(transfer)
    }

    /// Downloads a backup file: `backup_id`, or the newest. Returns its id and bytes.
    pub async fn download_backup(
        &self,
        backup_id: Option<&str>,
    ) -> Result<(String, Vec<u8>), BackupError> {
        let id = match backup_id {
            Some(id) => id.to_owned(),
            None => {
                self.list_backups()
                    .await?
                    .into_iter()
                    .next()
                    .ok_or(BackupError::NotFound)?
                    .backup_id
            }
        };
        let reply = self
            .call(protocol::get_backup_download(&id), true)
            .await
            .map_err(|e| match e.code() {
                Some(courier_core::ErrorCode::NotFound) => BackupError::NotFound,
                _ => BackupError::Client(e),
            })?;
        let resp = request(
            &reqwest::Client::new(),
            reqwest::Method::GET,
            &reply,
            "downloadUrl",
            "downloadHeaders",
        )?
        .send()
        .await
        .map_err(transfer)?;
        if !resp.status().is_success() {
            return Err(transfer(format!("download: HTTP {}", resp.status())));
        }
        Ok((id, resp.bytes().await.map_err(transfer)?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents() -> BackupContents {
        BackupContents {
            user_id: "u_alice".into(),
            created_at: "2026-11-29T12:00:00.000Z".into(),
            history: vec![HistoryEntry {
                session_id: "s1".into(),
                msg_id: "s1.1".into(),
                seq: 1,
                sender: "u_alice".into(),
                sender_device: "d_a".into(),
                sent_at: "2026-11-29T12:00:00.000Z".into(),
                kind: "text".into(),
                text: Some("the secret plan".into()),
                payload: None,
                expires_at: None,
                synced: false,
            }],
            room_keys: Vec::new(),
            cursors: Cursors::default(),
        }
    }

    #[test]
    fn a_backup_opens_with_its_passphrase_only_and_holds_no_plaintext() {
        let file = seal(&contents(), "correct horse").unwrap();
        assert_eq!(&file[..4], b"CBAK");
        assert_eq!(file[4], 1);
        assert_eq!(u32::from_le_bytes(file[6..10].try_into().unwrap()), 65536);
        assert!(!file.windows(6).any(|w| w == b"secret"));
        assert!(!file.windows(7).any(|w| w == b"u_alice"));
        let back = open(&file, "correct horse").unwrap();
        assert_eq!(back.history, contents().history);
        assert!(matches!(
            open(&file, "wrong horse"),
            Err(BackupError::WrongPassphrase)
        ));
        assert_eq!(
            open(&file, "wrong horse").unwrap_err().to_string(),
            "wrong passphrase or damaged backup"
        );
    }

    #[test]
    fn damaged_files_and_headers_fail_the_same_way() {
        let file = seal(&contents(), "pw").unwrap();
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            open(&flipped, "pw"),
            Err(BackupError::WrongPassphrase)
        ));
        // The header is authenticated: a changed salt byte fails too.
        let mut header = file.clone();
        header[20] ^= 1;
        assert!(matches!(
            open(&header, "pw"),
            Err(BackupError::WrongPassphrase)
        ));
        assert!(matches!(
            open(&file[..30], "pw"),
            Err(BackupError::WrongPassphrase)
        ));
        assert!(matches!(
            open(b"not a backup at all, really not one", "pw"),
            Err(BackupError::WrongPassphrase)
        ));
        let mut future = file;
        future[4] = 9;
        assert!(matches!(
            open(&future, "pw"),
            Err(BackupError::UnsupportedVersion(9))
        ));
    }
}
