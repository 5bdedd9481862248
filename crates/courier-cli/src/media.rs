//! Files: `courier send --file PATH` encrypts, uploads and sends one; `courier inbox` downloads,
//! checks, decrypts and saves the ones received (into `--save-dir`, by default
//! `<config dir>/downloads`). Transfers show a progress bar on a terminal.

use crate::messaging::{Ctx, Target, not_sent, print_line};
use anyhow::{Context, Result, bail};
use courier_client::media::{MediaPayload, OutgoingFile, Progress};
use courier_client::{Client, Cursors};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A progress bar on stderr (drawn only on a terminal) and the SDK callback that moves it.
fn progress_bar(label: &str) -> (ProgressBar, Progress) {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_owned());
    let b = bar.clone();
    let progress: Progress = Arc::new(move |done, total| {
        b.set_length(total);
        b.set_position(done);
    });
    (bar, progress)
}

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
    let mut config = ctx.config()?;
    config.sync_on_connect = false;
    config.auto_ack_delivered = false;
    let (client, _events) = ctx.connect(config).await?;
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

/// A name that stays inside the save directory: the last path component, without control
/// characters, never `.`/`..`; the media id when nothing is left.
fn safe_name(media: &MediaPayload) -> String {
    let name = media
        .file_name
        .as_deref()
        .and_then(|n| Path::new(n).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = name
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .take(200)
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        media.media_id.clone()
    } else {
        name
    }
}

/// `dir/name`, or `dir/name (1)`, `(2)`... when taken: nothing is overwritten.
fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
        _ => (name.to_owned(), String::new()),
    };
    (1..)
        .map(|i| dir.join(format!("{stem} ({i}){ext}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// Downloads, checks, decrypts and saves a received file; returns where it went.
pub async fn save(client: &Client, media: &MediaPayload, dir: &Path) -> Result<PathBuf> {
    let (bar, progress) = progress_bar("downloading");
    let result = client.download_file(media, Some(progress)).await;
    bar.finish_and_clear();
    let bytes = result.with_context(|| format!("downloading {}", media.media_id))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = free_path(dir, &safe_name(media));
    std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(name: Option<&str>) -> MediaPayload {
        MediaPayload {
            v: 1,
            t: "media".into(),
            media_id: "m_0123456789abcdef0123456789abcdef".into(),
            key: String::new(),
            nonce: String::new(),
            sha256: String::new(),
            size: 0,
            content_type: "image/png".into(),
            file_name: name.map(str::to_owned),
            caption: None,
        }
    }

    #[test]
    fn names_stay_inside_the_save_directory() {
        assert_eq!(safe_name(&media(Some("a.png"))), "a.png");
        assert_eq!(safe_name(&media(Some("../../etc/passwd"))), "passwd");
        assert_eq!(
            safe_name(&media(Some(".."))),
            "m_0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            safe_name(&media(None)),
            "m_0123456789abcdef0123456789abcdef"
        );
        assert_eq!(safe_name(&media(Some("a\nb.txt"))), "ab.txt");
    }

    #[test]
    fn nothing_is_overwritten() {
        let dir = std::env::temp_dir().join(format!("courier-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(free_path(&dir, "a.png"), dir.join("a.png"));
        std::fs::write(dir.join("a.png"), b"x").unwrap();
        assert_eq!(free_path(&dir, "a.png"), dir.join("a (1).png"));
        std::fs::write(dir.join("a (1).png"), b"x").unwrap();
        assert_eq!(free_path(&dir, "a.png"), dir.join("a (2).png"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
