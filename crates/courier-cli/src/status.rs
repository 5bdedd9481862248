//! `status post|view|viewers|remove`: status posts (24-hour stories), end-to-end encrypted
//! for the poster's audience (its contacts, per its privacy setting).

use crate::StatusCommand;
use crate::messaging::Ctx;
use anyhow::{Context, Result};
use courier_client::media::MediaPayload;

/// `courier status ...`.
pub async fn status(ctx: &Ctx<'_>, command: StatusCommand) -> Result<()> {
    let (client, _events) = ctx.connect_quietly().await?;
    match command {
        StatusCommand::Post { file, text } => {
            let (id, expires) = match file {
                Some(path) => {
                    crate::media::post_status_file(&client, &path, &text.join(" ")).await?
                }
                None => client
                    .post_status(&text.join(" "), &[])
                    .await
                    .context("posting the status")?,
            };
            println!("posted {id} (until {expires})");
        }
        StatusCommand::View {
            contact,
            json,
            save_dir,
        } => {
            let save_dir = save_dir.unwrap_or_else(|| ctx.store.0.join("downloads"));
            let user = if contact.starts_with("u_") {
                contact.clone()
            } else {
                client
                    .lookup_user(&contact)
                    .await
                    .with_context(|| format!("looking up {contact}"))?
            };
            let statuses = client
                .view_status(&user)
                .await
                .context("reading statuses")?;
            if statuses.is_empty() && !json {
                println!("no status from {contact}");
            }
            for s in &statuses {
                let file = s.text.as_deref().and_then(MediaPayload::parse);
                let saved = match &file {
                    Some(f) => Some(
                        crate::downloads::save(&client, f, &save_dir)
                            .await
                            .with_context(|| format!("saving the file of {}", s.status_id))?,
                    ),
                    None => None,
                };
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "statusId": s.status_id, "userId": s.user_id, "text": s.text,
                            "attachments": s.attachments, "postedAt": s.posted_at,
                            "expiresAt": s.expires_at,
                            "caption": file.as_ref().and_then(|f| f.caption.clone()),
                            "savedTo": saved.as_ref().map(|p| p.display().to_string()),
                        })
                    );
                } else {
                    let text = match (&file, &saved) {
                        (Some(f), Some(p)) => format!(
                            "{} saved to {}{}",
                            f.file_name.as_deref().unwrap_or("file"),
                            p.display(),
                            f.caption
                                .as_deref()
                                .map(|c| format!(" — {c}"))
                                .unwrap_or_default()
                        ),
                        _ => s
                            .text
                            .clone()
                            .unwrap_or_else(|| "(cannot decrypt: no key)".into()),
                    };
                    println!("[{}] {}: {text}", s.posted_at, ctx.who(&s.user_id));
                    println!("    {}  until {}", s.status_id, s.expires_at);
                }
            }
        }
        StatusCommand::Viewers { status_id } => {
            let viewers = client
                .status_viewers(&status_id)
                .await
                .with_context(|| format!("reading the viewers of {status_id}"))?;
            if viewers.is_empty() {
                println!("nobody has viewed {status_id} yet");
            }
            for v in viewers {
                println!("{}  {}", v.user_id, v.viewed_at);
            }
        }
        StatusCommand::Remove { status_id } => {
            client
                .remove_status(&status_id)
                .await
                .with_context(|| format!("removing {status_id}"))?;
            println!("removed {status_id}");
        }
    }
    client.close().await;
    Ok(())
}
