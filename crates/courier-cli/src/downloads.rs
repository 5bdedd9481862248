//! Files received: `courier inbox` downloads, checks, decrypts and saves them (into
//! `--save-dir`, by default `<config dir>/downloads`), under names that stay inside that folder
//! and never overwrite; transfers show a progress bar on a terminal.

use anyhow::{Context, Result};
use courier_client::Client;
use courier_client::media::{MediaPayload, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A progress bar on stderr (drawn only on a terminal) and the SDK callback that moves it.
pub(crate) fn progress_bar(label: &str) -> (ProgressBar, Progress) {
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
