//! `link`, `devices list|approve|send-history|remove` and `verify-contact`: linking companion
//! devices (the primary sends a new one its recent history, end-to-end encrypted) and checking
//! who is on the other end.

use crate::messaging::{Ctx, identity_warning};
use crate::{Store, Stored};
use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use courier_client::crypto::fingerprint;
use courier_client::history::HistoryStore;
use courier_client::history_bundle::Limits;
use courier_client::{AccountsClient, Client, ClientError, Event};
use courier_core::protocol::{DeviceInfo, Platform};
use std::time::Duration;

/// `courier devices ...`.
#[derive(Subcommand)]
pub enum DevicesCommand {
    /// List this account's devices with their key fingerprints.
    List,
    /// Approve a link code shown by a new device (from the primary device), then send it this
    /// device's recent history (per chat the last 90 days, at most 1,000 messages), encrypted,
    /// once it has published its keys.
    Approve {
        /// The code (case, spaces and dashes do not matter).
        code: String,
        /// Do not send the new device any history.
        #[arg(long)]
        no_history: bool,
        /// How long to wait for the new device's keys before giving up on sending history
        /// (seconds; send it later with `courier devices send-history`).
        #[arg(long, default_value_t = 120)]
        history_wait: u64,
    },
    /// Send this device's recent history to a linked device of this account (from the primary
    /// device; approving a link does it by itself).
    SendHistory {
        /// Its device id (`d_...`), as `courier devices list` shows it.
        device_id: String,
    },
    /// Remove a companion device (or this device, from a companion).
    Remove {
        /// Its device id (`d_...`), as `courier devices list` shows it.
        device_id: String,
    },
}

/// Connects once with end-to-end encryption, so this device's keys are on the server before
/// anyone sends to it. Best effort: any later command publishes them too.
pub async fn publish_keys(store: &Store, ws_url: &str) -> Result<()> {
    let ctx = Ctx::new(store, ws_url)?;
    let mut config = ctx.config()?;
    config.sync_on_connect = false;
    config.auto_ack_delivered = false;
    match Client::connect(config).await {
        Ok((client, _events)) => {
            client.keys_published().await;
            client.close().await;
        }
        Err(e) => eprintln!("(could not publish this device's keys yet: {e})"),
    }
    Ok(())
}

/// The code as a QR code, in terminal block characters (light on dark, as scanners expect).
fn qr(code: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let qr = qrcode::QrCode::new(code.as_bytes()).context("making the QR code")?;
    Ok(qr
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// `courier link`.
pub async fn link(
    store: &Store,
    accounts: &AccountsClient,
    ws_url: &str,
    device_name: String,
    timeout: Duration,
) -> Result<()> {
    let request = accounts
        .request_link(DeviceInfo {
            name: device_name,
            platform: Platform::Cli,
        })
        .await
        .context("asking for a link code")?;
    println!("{}", qr(&request.code)?);
    println!("Link code: {}", request.code);
    println!(
        "On your primary device run `courier devices approve {}` (valid {} minutes). Waiting...",
        request.code,
        request.expires_in_seconds / 60
    );
    let creds = tokio::time::timeout(
        timeout,
        accounts.wait_for_link(&request.link_id, Duration::from_secs(1)),
    )
    .await
    .map_err(|_| anyhow!("not approved within {} s", timeout.as_secs()))?
    .context("linking")?;
    store.save_new_device(&Stored {
        phone: String::new(),
        user_id: creds.user_id.clone(),
        device_id: creds.device_id.clone(),
        api_key: creds.api_key,
    })?;
    println!("Linked. user {} device {}", creds.user_id, creds.device_id);
    publish_keys(store, ws_url).await
}

/// `courier devices ...`.
pub async fn devices(ctx: &Ctx<'_>, command: DevicesCommand) -> Result<()> {
    let (client, _events) = ctx.connect_quietly().await?;
    match command {
        DevicesCommand::List => {
            let listed = client
                .list_devices(std::slice::from_ref(&ctx.me.user_id))
                .await
                .context("listing devices")?;
            for d in listed.iter().filter(|d| d.user_id == ctx.me.user_id) {
                let role = if d.primary { "primary" } else { "companion" };
                let this = if d.device_id == ctx.me.device_id {
                    "  (this device)"
                } else {
                    ""
                };
                let fp = d
                    .identity_key
                    .as_deref()
                    .and_then(|k| fingerprint(k).ok())
                    .unwrap_or_else(|| "(no keys yet)".into());
                println!(
                    "{}  {}  {}  {role}{this}\n    {fp}",
                    d.device_id, d.name, d.platform
                );
            }
        }
        DevicesCommand::Approve {
            code,
            no_history,
            history_wait,
        } => {
            let linked = client
                .approve_device_link(code.trim())
                .await
                .context("approving the link")?;
            println!(
                "approved: {} ({}, {})",
                linked.device_id, linked.name, linked.platform
            );
            if !no_history {
                let wait = Duration::from_secs(history_wait);
                send_history_when_ready(ctx, &client, &linked.device_id, wait).await?;
            }
        }
        DevicesCommand::SendHistory { device_id } => {
            send_history(ctx, &client, &device_id).await?;
        }
        DevicesCommand::Remove { device_id } => {
            client
                .remove_device(&device_id)
                .await
                .with_context(|| format!("removing {device_id}"))?;
            println!("removed {device_id}");
        }
    }
    client.close().await;
    Ok(())
}

/// After approving a link: waits (at most `wait`) for the new device to publish its keys (it
/// does right after it gets its credentials), then sends it this device's history. A device
/// that does not come in time gets nothing; the message says how to send it later.
async fn send_history_when_ready(
    ctx: &Ctx<'_>,
    client: &Client,
    device_id: &str,
    wait: Duration,
) -> Result<()> {
    println!(
        "Waiting for {device_id} to publish its keys to send it this device's history (up to {} s; --no-history skips)...",
        wait.as_secs()
    );
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if client
            .own_device_ready(device_id)
            .await
            .context("listing devices")?
        {
            return send_history(ctx, client, device_id).await;
        }
        if tokio::time::Instant::now() >= deadline {
            println!(
                "History not sent: {device_id} has not connected yet. Once it has, run `courier devices send-history {device_id}`."
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `courier devices send-history`: this device's recent history, as a bundle, to one of the
/// account's devices (only from the primary device: others' bundles are ignored).
async fn send_history(ctx: &Ctx<'_>, client: &Client, device_id: &str) -> Result<()> {
    let listed = client
        .list_devices(std::slice::from_ref(&ctx.me.user_id))
        .await
        .context("listing devices")?;
    let me = listed
        .iter()
        .find(|d| d.user_id == ctx.me.user_id && d.device_id == ctx.me.device_id);
    if !me.is_some_and(|d| d.primary) {
        bail!("only the primary device sends its history to linked devices");
    }
    if device_id == ctx.me.device_id {
        bail!("that is this device");
    }
    let entries = HistoryStore::open(ctx.store.crypto_dir())?.load()?;
    let sent = client
        .send_history(device_id, &entries, &Limits::default())
        .await
        .context("sending the history")?;
    println!(
        "sent {} in {} to the new device ({device_id}), encrypted",
        counted(sent.messages as usize, "message"),
        counted(sent.chats as usize, "chat")
    );
    Ok(())
}

/// After `courier link`: waits (at most `wait`) for the history bundle the primary device sends
/// once it sees this device's keys, and imports it into this device's history.
pub async fn receive_history(store: &Store, ws_url: &str, wait: Duration) -> Result<()> {
    if wait.is_zero() {
        return Ok(());
    }
    let ctx = Ctx::new(store, ws_url)?;
    let (client, mut events) = ctx.connect_quietly().await?;
    println!(
        "Waiting for the history from your phone (up to {} s)...",
        wait.as_secs()
    );
    let deadline = tokio::time::Instant::now() + wait;
    let result = loop {
        // Queued before this connection, or live (the client handles both).
        if let Err(e) = client.read_device_queue().await {
            eprintln!("(reading the device queue: {e})");
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break None;
        }
        let step = left.min(Duration::from_secs(2));
        match tokio::time::timeout(step, events.recv()).await {
            Ok(Some(Event::HistorySynced {
                messages, chats, ..
            })) => break Some(Ok((messages, chats))),
            Ok(Some(Event::Error(e))) if e.contains("history") => break Some(Err(e)),
            Ok(None) => break None,
            _ => {}
        }
    };
    client.close().await;
    match result {
        Some(Ok((messages, chats))) => println!(
            "synced {} in {} from the phone",
            counted(messages, "message"),
            counted(chats, "chat")
        ),
        Some(Err(e)) => eprintln!("courier: {e}"),
        None => println!(
            "No history from the phone yet (the next command that reads messages imports it when it comes)."
        ),
    }
    Ok(())
}

/// "1 message", "2 messages".
fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// `courier verify-contact`.
pub async fn verify_contact(ctx: &Ctx<'_>, contact: &str, accept: bool) -> Result<()> {
    let (client, _events) = ctx.connect_quietly().await?;
    let user = if contact.starts_with("u_") {
        contact.to_owned()
    } else {
        client
            .lookup_user(contact)
            .await
            .with_context(|| format!("looking up {contact}"))?
    };
    if user == ctx.me.user_id {
        bail!("that is you; see `courier devices list`");
    }
    let trusted = client.is_trusted(&user).await.context("checking keys")?;
    if accept {
        let n = client
            .accept_identity(&user)
            .await
            .context("accepting the identity")?;
        println!("Trusted the current keys of {n} device(s) of {user}.");
    } else if !trusted {
        eprintln!("{}", identity_warning(&user, "(see below)"));
    }
    let info = client.safety(&user).await.map_err(|e| match e {
        ClientError::Api(d) => anyhow!("{}: {}", d.code, d.message),
        other => anyhow!("{other}"),
    })?;
    println!("Safety number with {contact} ({user}):");
    let groups: Vec<&str> = info.safety_number.split(' ').collect();
    for row in groups.chunks(4) {
        println!("  {}", row.join(" "));
    }
    println!("Their devices:");
    for (device, fp, primary) in &info.theirs {
        let role = if *primary { "primary" } else { "companion" };
        println!("  {device} ({role})\n    {fp}");
    }
    println!("Your devices:");
    for (device, fp) in &info.mine {
        println!("  {device}\n    {fp}");
    }
    client.close().await;
    Ok(())
}
