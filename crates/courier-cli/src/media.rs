//! Files sent: `courier send --file PATH` (and a file status) encrypts, uploads and sends one,
//! with a progress bar on a terminal. Received files are saved by [`crate::downloads`].

use crate::downloads::progress_bar;
use crate::messaging::{Ctx, Target, not_sent, print_line};
use anyhow::{Context, Result, bail};
use courier_client::media::OutgoingFile;
use courier_client::{Client, Cursors};
use serde_json::json;
use std::path::Path;

/// A content type from the file's extension (the recipient sees it; the server never does).
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" => "audio/ogg",
        "m4a" => "audio/mp4",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// Reads a file to send (refusing one over the limit before anything is uploaded).
pub fn outgoing(path: &Path, caption: &str) -> Result<OutgoingFile> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > courier_client::media::MAX_FILE_BYTES {
        bail!(
            "{} is {} bytes; files are at most {} bytes (16 MiB less 16)",
            path.display(),
            bytes.len(),
            courier_client::media::MAX_FILE_BYTES
        );
    }
    Ok(OutgoingFile {
        content_type: content_type(path).to_owned(),
        file_name: path.file_name().map(|n| n.to_string_lossy().into_owned()),
        caption: (!caption.is_empty()).then(|| caption.to_owned()),
        bytes,
    })
}

/// Uploads a file as a photo/video status with a progress bar; returns `(statusId, expiresAt)`.
pub async fn post_status_file(
    client: &Client,
    path: &Path,
    caption: &str,
) -> Result<(String, String)> {
    let file = outgoing(path, caption)?;
    let (bar, progress) = progress_bar("uploading");
    let result = client.post_status_file(file, Some(progress)).await;
    bar.finish_and_clear();
    let (id, expires, _) = result.context("posting the status")?;
    Ok((id, expires))
}

/// `courier send <phone> --file PATH [caption]`.
pub async fn send_file(
    ctx: &Ctx<'_>,
    target: Target,
    path: &Path,
    caption: &str,
    as_json: bool,
) -> Result<()> {
    let file = outgoing(path, caption)?;
    let (client, _events) = ctx.connect_quietly().await?;
    let session = ctx.session_for(&client, &target).await?;
    let (bar, progress) = progress_bar("uploading");
    let result = client.send_file(&session, file, Some(progress)).await;
    bar.finish_and_clear();
    let (sent, media) = result.map_err(not_sent)?;
    let mut mine = Cursors::default();
    mine.mark_seen(&session, sent.seq, &sent.msg_id);
    ctx.save_cursors(&mine)?;
    client.close().await;
    if as_json {
        print_line(
            &json!({
                "sessionId": session, "msgId": sent.msg_id, "seq": sent.seq,
                "sentAt": sent.sent_at, "mediaId": media.media_id, "size": media.size,
            })
            .to_string(),
        );
    } else {
        print_line(&format!(
            "sent {} ({} bytes) msgId={} seq={} session={}",
            media.file_name.as_deref().unwrap_or("file"),
            media.size,
            sent.msg_id,
            sent.seq,
            session
        ));
    }
    Ok(())
}
