//! Persistence of a [`DeviceCrypto`], encrypted at rest.
//!
//! A directory holds two files, both mode 0600 (the directory is created 0700):
//!
//! - `crypto.key`: 32 random bytes, the AES-256 key. Created once; losing it loses the state
//!   (and with it this device's identity: the device must be re-linked).
//! - `crypto.state`: `"CCS1"` || 12-byte random nonce || AES-256-GCM(JSON snapshot), with
//!   `"courier-crypto-state-v1"` as associated data. The snapshot holds vodozemac's pickles of
//!   the account and every Olm/Megolm session, the trust pins and the replay records; nothing
//!   of it is readable without the key. Rewritten whole, atomically (temporary file, fsync,
//!   rename, fsync of the directory), on every [`CryptoStore::save`].
//!
//! One process at a time should use a directory: concurrent saves do not corrupt the file
//! (the rename is atomic) but the last one wins.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::DeviceCrypto;
use super::sealed::{self, KEY_LEN, SealError};

const KEY_FILE: &str = "crypto.key";
const STATE_FILE: &str = "crypto.state";

/// Why the crypto state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The state file exists but its key file does not: refusing to start over, which would
    /// overwrite the state.
    #[error("{state} exists but its key file {key} is missing")]
    KeyMissing {
        /// The state file.
        state: PathBuf,
        /// The missing key file.
        key: PathBuf,
    },
    /// The key file is not 32 bytes.
    #[error("{0} is not a 32-byte key")]
    BadKeyFile(PathBuf),
    /// The state file does not decrypt with this key: the wrong key, or a damaged file.
    #[error("{0} does not decrypt with the key in crypto.key (wrong key, or damaged file)")]
    WrongKey(PathBuf),
    /// The state decrypted but is not a state this version can read.
    #[error("{path} is not a valid crypto state: {reason}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The stored state belongs to another account or device.
    #[error("the stored crypto state belongs to {user}/{device}")]
    DeviceMismatch {
        /// The stored user.
        user: String,
        /// The stored device.
        device: String,
    },
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The encrypted file store of one device's crypto state. See the [module docs](self).
pub struct CryptoStore {
    dir: PathBuf,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for CryptoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CryptoStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CryptoStore {
    /// Opens the store in `dir`, creating the directory (0700) and the key file (0600) when
    /// there is no state yet.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_owned();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        let key_path = dir.join(KEY_FILE);
        let state_path = dir.join(STATE_FILE);

        let key = match File::open(&key_path) {
            Ok(file) => read_key(file, &key_path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if state_path.exists() {
                    return Err(StoreError::KeyMissing {
                        state: state_path,
                        key: key_path,
                    });
                }
                create_key(&key_path)?
            }
            Err(e) => return Err(io_error(&key_path)(e)),
        };
        Ok(Self { dir, key })
    }

    /// Opens the store and loads the device's state, or creates a new device (and saves it at
    /// once, so its identity survives) when there is none. A state of another user or device
    /// is [`StoreError::DeviceMismatch`].
    pub fn load_or_create(
        dir: impl AsRef<Path>,
        user_id: &str,
        device_id: &str,
    ) -> Result<(Self, DeviceCrypto), StoreError> {
        let store = Self::open(dir)?;
        let crypto = match store.load()? {
            Some(crypto) => {
                if crypto.user_id() != user_id || crypto.device_id() != device_id {
                    return Err(StoreError::DeviceMismatch {
                        user: crypto.user_id().to_owned(),
                        device: crypto.device_id().to_owned(),
                    });
                }
                crypto
            }
            None => {
                let crypto = DeviceCrypto::new(user_id, device_id);
                store.save(&crypto)?;
                crypto
            }
        };
        Ok((store, crypto))
    }

    /// The state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The key file.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Loads the saved state, or `None` if nothing was saved yet.
    pub fn load(&self) -> Result<Option<DeviceCrypto>, StoreError> {
        let path = self.state_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        sealed::open_state(self.key.as_slice(), &bytes)
            .map(Some)
            .map_err(seal_error(&path))
    }

    /// Saves the whole state, replacing the previous one atomically.
    pub fn save(&self, crypto: &DeviceCrypto) -> Result<(), StoreError> {
        let bytes = sealed::seal_state(self.key.as_slice(), crypto)
            .map_err(seal_error(&self.state_path()))?;
        write_atomically(&self.dir, STATE_FILE, &bytes)
    }

    /// Writes another file of this device's local state (`name` in the store's directory),
    /// encrypted like the crypto state: `magic` || nonce || AES-256-GCM(plaintext) with `aad`,
    /// under the same key, replaced atomically.
    pub(crate) fn save_sealed(
        &self,
        name: &str,
        magic: &[u8; 4],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.dir.join(name);
        let bytes =
            sealed::seal(self.key.as_slice(), magic, aad, plaintext).map_err(seal_error(&path))?;
        write_atomically(&self.dir, name, &bytes)
    }

    /// Reads a file written by [`save_sealed`](Self::save_sealed); `None` if it does not exist.
    pub(crate) fn load_sealed(
        &self,
        name: &str,
        magic: &[u8; 4],
        aad: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        sealed::unseal(self.key.as_slice(), magic, aad, &bytes)
            .map(Some)
            .map_err(seal_error(&path))
    }
}

fn seal_error(path: &Path) -> impl Fn(SealError) -> StoreError + '_ {
    move |e| match e {
        SealError::WrongKey => StoreError::WrongKey(path.to_owned()),
        SealError::Corrupt(reason) => StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        SealError::BadKey => StoreError::BadKeyFile(path.to_owned()),
    }
}

fn read_key(mut file: File, path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, StoreError> {
    let metadata = file.metadata().map_err(io_error(path))?;
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "crypto key file was readable by others; restricting it to 0600");
        fs::set_permissions(path, Permissions::from_mode(0o600)).map_err(io_error(path))?;
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(StoreError::BadKeyFile(path.to_owned()));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

fn create_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, StoreError> {
    let key = sealed::generate_key();
    let dir = path.parent().unwrap_or(Path::new("."));
    match write_new(dir, path, key.as_slice()) {
        Ok(()) => Ok(key),
        // Another process created it first: use theirs.
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
            read_key(File::open(path).map_err(io_error(path))?, path)
        }
        Err(e) => Err(e),
    }
}

/// Creates `path` (which must not exist) with mode 0600, writes and fsyncs it and its
/// directory.
fn write_new(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    file.write_all(bytes).map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    sync_dir(dir)
}

fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
    let result = write_new(dir, &temp, bytes)
        .and_then(|()| fs::rename(&temp, &target).map_err(io_error(&target)))
        .and_then(|()| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::tests::{Chat, device, send_olm};

    /// A directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            Self(std::env::temp_dir().join(format!("courier-crypto-{}", uuid::Uuid::new_v4())))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn sessions_established_before_a_save_still_work_after_a_reload() {
        let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
        let (store_a, mut alice) = CryptoStore::load_or_create(&dir_a.0, "alice", "a1").unwrap();
        let (store_b, mut bob) = CryptoStore::load_or_create(&dir_b.0, "bob", "b1").unwrap();
        let (alice_key, bob_key) = (alice.identity_key(), bob.identity_key());

        // Olm both ways, and a Megolm session Alice → Bob, before the save.
        assert_eq!(send_olm(&mut alice, &mut bob, b"hello").unwrap(), b"hello");
        assert_eq!(send_olm(&mut bob, &mut alice, b"hi").unwrap(), b"hi");
        let chat = Chat::new("chat-1");
        chat.share_key(&mut alice, &mut bob);
        let first = alice.encrypt_message("chat-1", b"m0");
        assert_eq!(chat.read(&mut bob, ("alice", "a1"), &first).unwrap(), b"m0");
        store_a.save(&alice).unwrap();
        store_b.save(&bob).unwrap();
        drop((alice, bob, store_a, store_b));

        let (store_a, mut alice) = CryptoStore::load_or_create(&dir_a.0, "alice", "a1").unwrap();
        let (_store_b, mut bob) = CryptoStore::load_or_create(&dir_b.0, "bob", "b1").unwrap();
        assert_eq!(alice.identity_key(), alice_key);
        assert_eq!(bob.identity_key(), bob_key);
        assert_eq!(bob.trust().pinned("alice", "a1"), Some(alice_key.as_str()));

        // The Olm session is reused: a normal (type 1) message, no one-time key needed.
        assert!(alice.has_olm_session(&bob_key));
        let payload = alice
            .encrypt_to_device("bob", "b1", &bob_key, None, b"after reload")
            .unwrap();
        assert!(payload.contains(r#""type":1"#));
        assert_eq!(
            bob.decrypt_from_device("alice", "a1", &alice_key, &payload)
                .unwrap(),
            b"after reload"
        );

        // The Megolm session goes on at the next index, and the replay record survived: the
        // same message decrypts again, the next one too.
        assert_eq!(chat.read(&mut bob, ("alice", "a1"), &first).unwrap(), b"m0");
        assert_eq!(alice.outbound_session_info("chat-1").unwrap().1, 1);
        let second = alice.encrypt_message("chat-1", b"m1");
        assert_eq!(
            chat.read(&mut bob, ("alice", "a1"), &second).unwrap(),
            b"m1"
        );
        // Alice can still read her own message from before the reload.
        assert_eq!(
            chat.read(&mut alice, ("alice", "a1"), &first).unwrap(),
            b"m0"
        );

        // A save after the reload works too (atomic replace of an existing file).
        store_a.save(&alice).unwrap();
        assert!(store_a.load().unwrap().is_some());
    }

    #[test]
    fn files_are_private_and_the_state_holds_no_plaintext_nor_the_key() {
        let dir = TempDir::new();
        let (store, mut alice) =
            CryptoStore::load_or_create(&dir.0, "alice-4155550100", "a1").unwrap();
        let mut bob = device("bob-4155550199", "b1");
        send_olm(&mut alice, &mut bob, b"secret olm text").unwrap();
        send_olm(&mut bob, &mut alice, b"secret reply").unwrap();
        let chat = Chat::new("chat-confidential");
        chat.share_key(&mut alice, &mut bob);
        alice.encrypt_message("chat-confidential", b"secret megolm text");
        store.save(&alice).unwrap();

        assert_eq!(mode(&store.key_path()), 0o600);
        assert_eq!(mode(&store.state_path()), 0o600);
        assert_eq!(mode(&dir.0), 0o700);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let key = fs::read(store.key_path()).unwrap();
        assert_eq!(key.len(), 32);
        let state = fs::read(store.state_path()).unwrap();
        assert!(state.starts_with(b"CCS1"));
        for needle in [
            key.as_slice(),
            vodozemac::base64_encode(&key).as_bytes(),
            hex::encode(&key).as_bytes(),
            b"alice-4155550100",
            b"bob-4155550199",
            b"chat-confidential",
            alice.identity_key().as_bytes(),
            bob.identity_key().as_bytes(),
            alice.signing_key().as_bytes(),
            b"pickle",
            b"session",
        ] {
            assert!(
                !contains(&state, needle),
                "state file contains {:?}",
                String::from_utf8_lossy(needle)
            );
        }
        // The body is not the JSON snapshot. (A two-byte needle such as `{"`
        // would turn up by chance in random ciphertext: one in 65,536 per
        // position, so only needles of several bytes are searched for.)
        assert!(serde_json::from_slice::<serde_json::Value>(&state[4..]).is_err());
        let snapshot = serde_json::to_vec(&alice.to_snapshot()).unwrap();
        assert!(!contains(&state, &snapshot[..16.min(snapshot.len())]));
    }

    #[test]
    fn a_wrong_key_fails_to_load_clearly_and_leaves_the_state_alone() {
        let dir = TempDir::new();
        let (store, alice) = CryptoStore::load_or_create(&dir.0, "alice", "a1").unwrap();
        store.save(&alice).unwrap();
        let state_before = fs::read(store.state_path()).unwrap();

        // Replace the key file's content with another key (keeping its mode).
        fs::write(store.key_path(), [7u8; 32]).unwrap();
        let err = CryptoStore::load_or_create(&dir.0, "alice", "a1").unwrap_err();
        assert!(matches!(err, StoreError::WrongKey(_)), "{err:?}");
        assert!(err.to_string().contains("wrong key"), "{err}");
        assert_eq!(fs::read(store.state_path()).unwrap(), state_before);

        // A key file of the wrong size.
        fs::write(store.key_path(), [7u8; 31]).unwrap();
        assert!(matches!(
            CryptoStore::open(&dir.0).unwrap_err(),
            StoreError::BadKeyFile(_)
        ));

        // No key file at all next to a state: refuse rather than start over.
        fs::remove_file(store.key_path()).unwrap();
        assert!(matches!(
            CryptoStore::open(&dir.0).unwrap_err(),
            StoreError::KeyMissing { .. }
        ));
        assert_eq!(fs::read(store.state_path()).unwrap(), state_before);
    }

    #[test]
    fn a_damaged_state_or_another_device_is_refused() {
        let dir = TempDir::new();
        let (store, alice) = CryptoStore::load_or_create(&dir.0, "alice", "a1").unwrap();
        store.save(&alice).unwrap();

        assert!(matches!(
            CryptoStore::load_or_create(&dir.0, "alice", "a2").unwrap_err(),
            StoreError::DeviceMismatch { .. }
        ));

        let mut state = fs::read(store.state_path()).unwrap();
        let last = state.len() - 1;
        state[last] ^= 1;
        fs::write(store.state_path(), &state).unwrap();
        assert!(matches!(store.load().unwrap_err(), StoreError::WrongKey(_)));
    }

    #[test]
    fn a_loose_key_file_is_tightened_to_0600() {
        let dir = TempDir::new();
        let store = CryptoStore::open(&dir.0).unwrap();
        fs::set_permissions(store.key_path(), Permissions::from_mode(0o644)).unwrap();
        CryptoStore::open(&dir.0).unwrap();
        assert_eq!(mode(&store.key_path()), 0o600);
    }
}
