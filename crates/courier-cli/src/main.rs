//! `courier`: the command-line client. Registers a phone number, verifies the SMS code (or
//! links to an account as a companion device), and keeps the device's credentials in the
//! user's config directory (mode 0600); sends messages, reads the inbox (resuming from the
//! cursors kept in `state.json`, mode 0600) and chats, always end-to-end encrypted (the
//! device's keys and sessions in `crypto/`, encrypted at rest); manages linked devices and
//! shows safety numbers. Every message sent or shown is kept in the device's history
//! (`crypto/history.state`, encrypted at rest); `courier backup` saves history and keys under a
//! passphrase and restores them on a new device of the account.

mod address_book;
mod backup;
mod contacts;
mod devices;
mod downloads;
mod media;
mod messaging;
mod pin;
mod status;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use courier_client::{AccountsClient, ConnectError, Session};
use courier_core::protocol::{DeviceInfo, Platform};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "courier", version, about = "Courier messaging client")]
struct Cli {
    /// HTTP API URL (the local cloud's by default).
    #[arg(
        long,
        env = "COURIER_HTTP_URL",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    http_url: String,
    /// WebSocket API URL.
    #[arg(
        long,
        env = "COURIER_WS_URL",
        default_value = "ws://127.0.0.1:3001",
        global = true
    )]
    ws_url: String,
    /// Where credentials are kept (default: the user's config directory).
    #[arg(long, env = "COURIER_CONFIG_DIR", global = true)]
    config_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum PinCommand {
    /// Set (or change) the six-digit registration PIN. On a linked device only a change, with
    /// the current PIN.
    Set {
        /// Read the PIN from the first line of this file instead of asking twice.
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// On a linked device: the current PIN, from the first line of this file (otherwise it
        /// is asked for when the server needs it).
        #[arg(long)]
        current_pin_file: Option<PathBuf>,
    },
    /// Turn two-step verification off (on a linked device, with the current PIN).
    Remove {
        /// On a linked device: the current PIN, from the first line of this file (otherwise it
        /// is asked for when the server needs it).
        #[arg(long)]
        current_pin_file: Option<PathBuf>,
    },
    /// Check that you remember the PIN (any device): says whether it is right, and fails when
    /// it is not. Wrong PINs count against a small daily budget of the account.
    Check {
        /// Read the PIN from the first line of this file instead of asking.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Ask for a verification code by SMS for a phone number in E.164 (+14155550100).
    Register {
        /// The phone number.
        phone: String,
    },
    /// Verify the code from the SMS; this device becomes the account's primary device.
    Verify {
        /// The six digits.
        code: String,
        /// A name for this device.
        #[arg(long, default_value = "courier-cli")]
        device_name: String,
        /// The account's registration PIN (two-step verification), from the first line of this
        /// file; without it, the PIN is asked for if the account has one.
        #[arg(long)]
        pin_file: Option<PathBuf>,
    },
    /// Two-step verification: `pin set` makes re-registering this number need a six-digit PIN
    /// as well as the SMS code (a linked device only changes it, with the current PIN);
    /// `pin remove` turns it off; `pin check` checks that you remember it.
    Pin {
        #[command(subcommand)]
        command: PinCommand,
    },
    /// Show who this device is signed in as, and check the key with the server.
    Whoami,
    /// Link this device to an existing account as a companion: shows a code (text and QR) to
    /// approve on the primary device with `courier devices approve <code>`, waits for it.
    Link {
        /// A name for this device.
        #[arg(long, default_value = "courier-cli")]
        device_name: String,
        /// Give up after this many seconds (the code lives 5 minutes).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// After linking, wait this many seconds for the history the primary device sends
        /// (it comes within seconds unless approved with --no-history; 0: do not wait; one
        /// that comes later is imported by the next command that reads messages).
        #[arg(long, default_value_t = 60)]
        history_wait: u64,
    },
    /// The account's devices: list, approve a link code (primary device), remove.
    Devices {
        #[command(subcommand)]
        command: devices::DevicesCommand,
    },
    /// Show the safety number with a contact (compare it with theirs, in person or by a call)
    /// and their devices' fingerprints; `--accept` trusts their current keys after a change.
    VerifyContact {
        /// The contact's phone number (E.164) or user id (`u_...`).
        contact: String,
        /// Trust the contact's current identity keys (after a reported change).
        #[arg(long)]
        accept: bool,
    },
    /// Send a text message: `courier send <phone> <text>` or `courier send --session <id> <text>`;
    /// or a file, end-to-end encrypted: `courier send <phone> --file PATH [caption]`.
    Send {
        /// Send this file (at most 16 MiB), encrypted before upload; the text is its caption.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Send in this session instead of the direct chat with a phone number.
        #[arg(long, conflicts_with = "user")]
        session: Option<String>,
        /// Send in the direct chat with this user id instead of a phone number.
        #[arg(long)]
        user: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// The phone number (E.164) unless --session or --user is given, then the text (words
        /// are joined with spaces).
        #[arg(required_unless_present = "file", num_args = 1.., allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The people you saved, by name: `courier contacts add <phone> [name]`, `list`, `remove`.
    Contacts {
        #[command(subcommand)]
        command: ContactsCommand,
    },
    /// Block someone (by phone number or user id): they are not told, but nothing they send
    /// you in a direct chat reaches you, and they see none of your presence, profile or status.
    Block {
        /// Their number (E.164) or user id.
        person: String,
    },
    /// Unblock someone.
    Unblock {
        /// Their number (E.164) or user id.
        person: String,
    },
    /// List the people you blocked.
    Blocked,
    /// Report someone for moderation, with their last messages on this device, and block them.
    Report {
        /// Their number (E.164) or user id.
        person: String,
        /// How many of their last messages to attach (0 to 5).
        #[arg(long, default_value_t = 5)]
        last: usize,
    },
    /// Your profile name, as people who did not save you see it: `courier profile [--name NAME]`.
    Profile {
        /// Set it to this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete one of your messages for everyone (within 48 hours of sending it): `courier delete
    /// <msgId>` (message ids are in `courier history --json`).
    Delete {
        /// The message.
        msg_id: String,
    },
    /// Fetch new messages of every session, print them, mark them delivered, and exit.
    Inbox {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Where received files are saved (default: `downloads` in the config directory).
        #[arg(long)]
        save_dir: Option<PathBuf>,
    },
    /// Groups: create, add, remove (or leave), promote, delete, info. Members are phone numbers
    /// (E.164) or user ids (`u_...`). Chat in a group with `courier chat --session <groupId>`.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Status posts (24 hours): post, view a contact's, list your status's viewers, remove.
    Status {
        #[command(subcommand)]
        command: StatusCommand,
    },
    /// Show the messages this device sent or showed (kept encrypted on this device): all, or
    /// one chat's (`<phone>`, `--user`, `--session`).
    History {
        #[command(flatten)]
        chat: messaging::TargetArgs,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Backups of history and message keys, encrypted under a passphrase: create, list,
    /// restore (on a new device of the same account).
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Chat with a phone number: lines typed are sent, messages received are shown (and marked
    /// read); your messages show ✓ sent, ✓✓ delivered, ✓✓ read. End with EOF (Ctrl-D).
    Chat {
        #[command(flatten)]
        chat: messaging::TargetArgs,
    },
    /// Disappearing messages in a chat: `courier timer 24h|7d|90d|off <phone>` (or --session,
    /// --user). In a group only an admin may change it.
    Timer {
        /// How long new messages last: 24h, 7d, 90d or off.
        duration: String,
        #[command(flatten)]
        chat: messaging::TargetArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Encrypt this device's history and message keys under a passphrase and upload them.
    Create {
        /// Read the passphrase from the first line of this file instead of asking twice.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// The account's backups, newest first (the newest three are kept).
    List {
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup (the newest by default) onto this device of the same account.
    Restore {
        /// Which backup (`courier backup list`).
        #[arg(long)]
        backup_id: Option<String>,
        /// Read the passphrase from the first line of this file instead of asking.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group with you as admin: `courier group create "Name" +15550001 +15550002`.
    Create {
        /// Its name.
        name: String,
        /// The other members.
        #[arg(required = true)]
        members: Vec<String>,
        /// A description.
        #[arg(long)]
        description: Option<String>,
    },
    /// Add a member (admins).
    Add { group: String, member: String },
    /// Remove a member (admins), or yourself (`me`: leave).
    Remove { group: String, member: String },
    /// Make a member admin (admins).
    Promote { group: String, member: String },
    /// Delete the group (admins).
    Delete { group: String },
    /// Show the group and its members.
    Info {
        group: String,
        /// Print the server's JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ContactsCommand {
    /// Save someone by phone number, with the name to show them by.
    Add {
        /// Their number (E.164).
        phone: String,
        /// The name (words are joined with spaces); without it, their number is shown.
        name: Vec<String>,
    },
    /// List the people you saved.
    List,
    /// Forget someone you saved.
    Remove {
        /// Their number, as saved.
        phone: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum StatusCommand {
    /// Post a status, end-to-end encrypted for your contacts (per your privacy setting).
    Post {
        /// A photo or video to post (encrypted before upload, at most 16 MiB); the text becomes
        /// its caption. Give it before the text.
        #[arg(long)]
        file: Option<PathBuf>,
        /// The text (words are joined with spaces).
        #[arg(required_unless_present = "file", num_args = 0.., allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Show a user's live statuses you may see, decrypted; photo and video statuses are saved.
    View {
        /// Their phone number (E.164) or user id (`u_...`).
        contact: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Where status files are saved (default: `downloads` in the config directory).
        #[arg(long)]
        save_dir: Option<PathBuf>,
    },
    /// Who viewed one of your statuses.
    Viewers {
        /// The status id, as `courier status post` printed it.
        status_id: String,
    },
    /// Remove one of your statuses.
    Remove {
        /// The status id.
        status_id: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    phone: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    /// The number (empty on a linked companion device, which never saw it).
    #[serde(default)]
    phone: String,
    user_id: String,
    device_id: String,
    api_key: String,
}

struct Store(PathBuf);

impl Store {
    fn new(dir: Option<PathBuf>) -> Result<Self> {
        let dir = match dir {
            Some(d) => d,
            None => dirs::config_dir()
                .context("no config directory for this user")?
                .join("courier"),
        };
        Ok(Self(dir))
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let path = self.0.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// This device's credentials, or the error that says how to get them.
    fn credentials(&self) -> Result<Stored> {
        match self.read::<Stored>("credentials.json")? {
            Some(me) => Ok(me),
            None => {
                bail!("not signed in; run `courier register <phone>` then `courier verify <code>`")
            }
        }
    }

    /// This device's end-to-end encryption state (keys, sessions, pins), encrypted at rest.
    fn crypto_dir(&self) -> PathBuf {
        self.0.join("crypto")
    }

    /// Saves new credentials: a new device, so the previous device's crypto state and
    /// cursors (if any) go.
    fn save_new_device(&self, creds: &Stored) -> Result<()> {
        let crypto = self.crypto_dir();
        if crypto.exists() {
            std::fs::remove_dir_all(&crypto)
                .with_context(|| format!("removing {}", crypto.display()))?;
        }
        let _ = std::fs::remove_file(self.0.join("state.json"));
        self.write("credentials.json", creds)
    }

    /// Writes a file readable only by the user (it may hold the API key).
    fn write(&self, name: &str, value: &impl Serialize) -> Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.0)
            .with_context(|| format!("creating {}", self.0.display()))?;
        let path = self.0.join(name);
        let tmp = self.0.join(format!(".{name}.tmp"));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(value)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let store = Store::new(cli.config_dir)?;
    let accounts = AccountsClient::new(&cli.http_url);
    match cli.command {
        Command::Register { phone } => {
            let reply = accounts.register(&phone).await?;
            store.write(
                "pending.json",
                &Pending {
                    phone: phone.clone(),
                },
            )?;
            println!(
                "A code was sent by SMS to {phone}; it expires in {} minutes.",
                reply.expires_in_seconds / 60
            );
            println!("Next: courier verify <code>");
        }
        Command::Verify {
            code,
            device_name,
            pin_file,
        } => {
            let Some(pending) = store.read::<Pending>("pending.json")? else {
                bail!("no registration in progress; run `courier register <phone>` first");
            };
            let device = DeviceInfo {
                name: device_name,
                platform: Platform::Cli,
            };
            let creds =
                pin::verify(&accounts, &pending.phone, code.trim(), device, pin_file).await?;
            let stored = Stored {
                phone: pending.phone,
                user_id: creds.user_id.clone(),
                device_id: creds.device_id.clone(),
                api_key: creds.api_key,
            };
            store.save_new_device(&stored)?;
            let _ = std::fs::remove_file(store.0.join("pending.json"));
            println!(
                "Verified. user {} device {}",
                creds.user_id, creds.device_id
            );
            devices::publish_keys(&store, &cli.ws_url).await?;
        }
        Command::Pin { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            pin::pin(&ctx, command).await?;
        }
        Command::Link {
            device_name,
            timeout,
            history_wait,
        } => {
            devices::link(
                &store,
                &accounts,
                &cli.ws_url,
                device_name,
                std::time::Duration::from_secs(timeout),
            )
            .await?;
            devices::receive_history(
                &store,
                &cli.ws_url,
                std::time::Duration::from_secs(history_wait),
            )
            .await?;
        }
        Command::Devices { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            devices::devices(&ctx, command).await?;
        }
        Command::VerifyContact { contact, accept } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            devices::verify_contact(&ctx, &contact, accept).await?;
        }
        Command::Whoami => {
            let me = store.credentials()?;
            let phone = if me.phone.is_empty() {
                "(linked device)"
            } else {
                me.phone.as_str()
            };
            println!(
                "phone:  {phone}\nuser:   {}\ndevice: {}",
                me.user_id, me.device_id
            );
            match Session::connect(&cli.ws_url, &me.api_key).await {
                Ok(session) => {
                    session.close().await;
                    println!("server: key accepted");
                }
                Err(ConnectError::Refused(401)) => {
                    bail!("server: key refused (revoked, or the account moved to another phone)")
                }
                Err(e) => bail!("server: {e}"),
            }
        }
        Command::Send {
            mut file,
            session,
            user,
            json,
            mut args,
        } => {
            // The text takes words starting with '-', so `send <phone> --file PATH caption`
            // reaches here with `--file PATH` among the words: take it out.
            if file.is_none()
                && let Some(i) = args
                    .iter()
                    .position(|a| a == "--file" || a.starts_with("--file="))
            {
                let word = args.remove(i);
                file = match word.strip_prefix("--file=") {
                    Some(p) => Some(PathBuf::from(p)),
                    None if i < args.len() => Some(PathBuf::from(args.remove(i))),
                    None => bail!("--file needs a path"),
                };
            }
            let (target, text) = match (session, user) {
                (Some(s), _) => (messaging::Target::Session(s), args.join(" ")),
                (None, Some(u)) => (messaging::Target::User(u), args.join(" ")),
                (None, None) if file.is_some() && !args.is_empty() => (
                    messaging::Target::Phone(args[0].clone()),
                    args[1..].join(" "),
                ),
                (None, None) => {
                    if args.len() < 2 {
                        bail!(
                            "usage: courier send <phone> <text>  or  courier send --session <id> <text>"
                        );
                    }
                    (
                        messaging::Target::Phone(args[0].clone()),
                        args[1..].join(" "),
                    )
                }
            };
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            match file {
                Some(path) => media::send_file(&ctx, target, &path, &text, json).await?,
                None => messaging::send(&ctx, target, &text, json).await?,
            }
        }
        Command::Inbox {
            json,
            timeout,
            save_dir,
        } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            let timeout = std::time::Duration::from_secs(timeout);
            messaging::inbox(&ctx, json, timeout, save_dir).await?;
        }
        Command::Group { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            messaging::group(&ctx, command).await?;
        }
        Command::Status { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            status::status(&ctx, command).await?;
        }
        Command::Contacts { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::contacts(&ctx, command).await?;
        }
        Command::Block { person } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::block(&ctx, Some(&person), true).await?;
        }
        Command::Unblock { person } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::block(&ctx, Some(&person), false).await?;
        }
        Command::Blocked => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::block(&ctx, None, true).await?;
        }
        Command::Report { person, last } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::report(&ctx, &person, last).await?;
        }
        Command::Profile { name } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            contacts::profile(&ctx, name).await?;
        }
        Command::Delete { msg_id } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            messaging::delete(&ctx, &msg_id).await?;
        }
        Command::History { chat, json } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            backup::history(&ctx, chat.target(), json).await?;
        }
        Command::Backup { command } => {
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            match command {
                BackupCommand::Create { passphrase_file } => {
                    backup::create(&ctx, passphrase_file.as_deref()).await?
                }
                BackupCommand::List { json } => backup::list(&ctx, json).await?,
                BackupCommand::Restore {
                    backup_id,
                    passphrase_file,
                } => {
                    backup::restore(&ctx, backup_id.as_deref(), passphrase_file.as_deref()).await?
                }
            }
        }
        Command::Chat { chat } => {
            let Some(target) = chat.target() else {
                bail!("usage: courier chat <phone> (or --session ID, --user ID)");
            };
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            messaging::chat(&ctx, target).await?;
        }
        Command::Timer { duration, chat } => {
            let Some(target) = chat.target() else {
                bail!("usage: courier timer 24h|7d|90d|off <phone> (or --session ID, --user ID)");
            };
            let ctx = messaging::Ctx::new(&store, &cli.ws_url)?;
            messaging::set_timer(&ctx, target, &duration).await?;
        }
    }
    Ok(())
}
