//! `courier`: the command-line client. Registers a phone number, verifies the SMS code, and
//! keeps the device's credentials in the user's config directory (mode 0600).

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
    },
    /// Show who this device is signed in as, and check the key with the server.
    Whoami,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pending {
    phone: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
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
        Command::Verify { code, device_name } => {
            let Some(pending) = store.read::<Pending>("pending.json")? else {
                bail!("no registration in progress; run `courier register <phone>` first");
            };
            let device = DeviceInfo {
                name: device_name,
                platform: Platform::Cli,
            };
            let creds = accounts.verify(&pending.phone, code.trim(), device).await?;
            store.write(
                "credentials.json",
                &Stored {
                    phone: pending.phone,
                    user_id: creds.user_id.clone(),
                    device_id: creds.device_id.clone(),
                    api_key: creds.api_key,
                },
            )?;
            let _ = std::fs::remove_file(store.0.join("pending.json"));
            println!(
                "Verified. user {} device {}",
                creds.user_id, creds.device_id
            );
        }
        Command::Whoami => {
            let Some(me) = store.read::<Stored>("credentials.json")? else {
                bail!("not signed in; run `courier register <phone>` then `courier verify <code>`");
            };
            println!(
                "phone:  {}\nuser:   {}\ndevice: {}",
                me.phone, me.user_id, me.device_id
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
    }
    Ok(())
}
