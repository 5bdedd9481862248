//! `history` and `backup create|list|restore`.
//!
//! A backup holds this device's history, the Megolm room keys it holds (so messages still on
//! the server can be read again) and its cursors, encrypted under a passphrase (Argon2id,
//! AES-256-GCM; see `courier_client::backup`). It restores onto another device of the same
//! account: a companion linked with `courier link`, or a new phone after `courier register` /
//! `courier verify` with the same number. The device's own identity keys are never in it.

use crate::messaging::{Ctx, Target, date_time, print_line};
use anyhow::{Context, Result, bail};
use courier_client::backup::{self, BackupContents, BackupError};
use courier_client::crypto::CryptoStore;
use courier_client::history::{HistoryEntry, HistoryStore};
use std::path::Path;
use zeroize::Zeroizing;

/// The shortest passphrase accepted for a new backup.
const MIN_PASSPHRASE_CHARS: usize = 8;

/// The passphrase: the first line of `file`, or typed (twice when `confirm`).
fn passphrase(file: Option<&Path>, confirm: bool) -> Result<Zeroizing<String>> {
    let p = match file {
        Some(f) => {
            let text = Zeroizing::new(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            );
            Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
        }
        None => {
            let first = Zeroizing::new(rpassword::prompt_password("Backup passphrase: ")?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("Repeat it: ")?);
                if *again != *first {
                    bail!("the passphrases differ");
                }
            }
            first
        }
    };
    if p.is_empty() {
        bail!("the passphrase is empty");
    }
    if confirm && p.chars().count() < MIN_PASSPHRASE_CHARS {
        bail!("the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters");
    }
    Ok(p)
}

/// `courier history`.
pub async fn history(ctx: &Ctx<'_>, target: Option<Target>, as_json: bool) -> Result<()> {
    let entries = HistoryStore::open(ctx.store.crypto_dir())?.load()?;
    let session = match target {
        None => None,
        Some(Target::Session(s)) => Some(s),
        Some(t) => {
            let (client, _events) = ctx.connect_quietly().await?;
            let peer = match t {
                Target::Phone(p) => client
                    .lookup_user(&p)
                    .await
                    .with_context(|| format!("looking up {p}"))?,
                Target::User(u) => u,
                Target::Session(_) => unreachable!("handled above"),
            };
            client.close().await;
            let me = courier_core::UserId::from_trusted(ctx.me.user_id.clone());
            let peer = courier_core::UserId::from_trusted(peer);
            Some(courier_core::SessionId::direct(&me, &peer).to_string())
        }
    };
    let shown: Vec<&HistoryEntry> = entries
        .iter()
        .filter(|e| session.as_deref().is_none_or(|s| e.session_id == s))
        .collect();
    for e in &shown {
        if as_json {
            print_line(&serde_json::to_string(e)?);
        } else {
            let body = match (&e.text, &e.payload) {
                _ if e.kind == "deleted" => crate::messaging::DELETED.to_owned(),
                (Some(t), _) => crate::messaging::plaintext_shown(t),
                (None, Some(p)) => format!("({} message) {p}", e.kind),
                (None, None) => format!("({} message)", e.kind),
            };
            // Messages the primary device sent when this one was linked.
            let synced = if e.synced {
                " (synced from your phone)"
            } else {
                ""
            };
            print_line(&format!(
                "[{}] {} {}: {body}{synced}",
                e.session_id,
                date_time(&e.sent_at),
                ctx.who(&e.sender)
            ));
        }
    }
    if !as_json && shown.is_empty() {
        eprintln!("No history.");
    }
    Ok(())
}

/// A client that only makes requests: no sync, no acknowledgements.
/// `courier backup create`.
pub async fn create(ctx: &Ctx<'_>, passphrase_file: Option<&Path>) -> Result<()> {
    let pass = passphrase(passphrase_file, true)?;
    let history = HistoryStore::open(ctx.store.crypto_dir())?.load()?;
    let room_keys = match CryptoStore::open(ctx.store.crypto_dir())?.load()? {
        Some(crypto) => crypto.export_room_keys(),
        None => Vec::new(),
    };
    let contents = BackupContents {
        user_id: ctx.me.user_id.clone(),
        created_at: chrono_now(),
        history,
        room_keys,
        cursors: ctx.state()?.cursors,
    };
    let file = backup::seal(&contents, &pass)?;
    let (client, _events) = ctx.connect_quietly().await?;
    let result = client.upload_backup(file).await;
    client.close().await;
    let info = result.context("backup")?;
    print_line(&format!(
        "backup {} created: {} messages, {} room keys, {} bytes encrypted",
        info.backup_id,
        contents.history.len(),
        contents.room_keys.len(),
        info.size
    ));
    Ok(())
}

fn chrono_now() -> String {
    courier_core::chat::timestamp(chrono::Utc::now())
}

/// `courier backup list`.
pub async fn list(ctx: &Ctx<'_>, as_json: bool) -> Result<()> {
    let (client, _events) = ctx.connect_quietly().await?;
    let result = client.list_backups().await;
    client.close().await;
    let backups = result.context("listing backups")?;
    if as_json {
        print_line(&serde_json::to_string(&backups)?);
    } else if backups.is_empty() {
        eprintln!("No backups.");
    } else {
        for b in backups {
            print_line(&format!(
                "{}  {}  {} bytes",
                b.backup_id,
                date_time(&b.created_at),
                b.size
            ));
        }
    }
    Ok(())
}

/// `courier backup restore`: nothing is changed unless the whole backup decrypts.
pub async fn restore(
    ctx: &Ctx<'_>,
    backup_id: Option<&str>,
    passphrase_file: Option<&Path>,
) -> Result<()> {
    let pass = passphrase(passphrase_file, false)?;
    let (client, _events) = ctx.connect_quietly().await?;
    let result = client.download_backup(backup_id).await;
    client.close().await;
    let (id, file) = match result {
        Ok(r) => r,
        Err(BackupError::NotFound) => bail!("no backup found for this account"),
        Err(e) => return Err(e).context("downloading the backup"),
    };
    let contents = backup::open(&file, &pass)?;
    if contents.user_id != ctx.me.user_id {
        bail!(BackupError::OtherAccount);
    }
    let store = CryptoStore::open(ctx.store.crypto_dir())?;
    let mut crypto = store
        .load()?
        .context("this device has no keys yet; connect once (e.g. `courier whoami`) first")?;
    let keys = crypto.import_room_keys(&contents.room_keys);
    store.save(&crypto)?;
    let added = HistoryStore::open(ctx.store.crypto_dir())?.record(contents.history.clone())?;
    ctx.save_cursors(&contents.cursors)?;
    print_line(&format!(
        "restored backup {id}: {added} messages, {keys} room keys"
    ));
    Ok(())
}
