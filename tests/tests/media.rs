//! Media on the local cloud, with real SDK clients (end-to-end encrypted) and the CLI: a 10 MiB
//! file goes up encrypted, the stored S3 object is not the plaintext, a member downloads and
//! decrypts it byte-identical; a non-member is refused; a 17 MiB upload is refused; only your own
//! media can be attached; unknown media is NOT_FOUND.

use courier_client::client::Events;
use courier_client::media::{MediaPayload, OutgoingFile, upload_bytes};
use courier_client::protocol::{MessageKind, NewMessage};
use courier_client::{Client, ClientConfig, ClientError, Encryption, Event, Message};
use courier_core::ErrorCode;
use courier_core::protocol::Credentials;
use courier_tests::{TestCloud, WAIT, fresh_phone, repo_root};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const MIB: usize = 1024 * 1024;

/// One encrypting device.
struct Device {
    creds: Credentials,
    client: Client,
    events: Events,
}

impl Device {
    async fn open(cloud: &TestCloud) -> Device {
        let creds = cloud.sign_up().await;
        let mut config = ClientConfig::new(&cloud.ws_url, &creds.api_key);
        config.encryption = Some(Encryption {
            dir: temp_dir("device"),
            user_id: creds.user_id.clone(),
            device_id: creds.device_id.clone(),
        });
        let (client, events) = Client::connect(config).await.expect("connected");
        client.keys_published().await;
        Device {
            creds,
            client,
            events,
        }
    }

    /// The message with this id, decrypted (other events skipped).
    async fn message(&mut self, msg_id: &str) -> Message {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Event::Message(m)) if m.msg_id == msg_id => return m,
                    Some(Event::Undecryptable { message, reason }) if message.msg_id == msg_id => {
                        panic!("{msg_id} could not be decrypted: {reason}")
                    }
                    Some(_) => {}
                    None => panic!("the client stopped"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {msg_id} within {WAIT:?}"))
    }
}

fn temp_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "courier-media-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// `n` bytes that look random (xorshift from a random seed): no run repeats.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x = uuid::Uuid::new_v4().as_u128() as u64 | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> Option<ErrorCode> {
    match r {
        Err(e) => e.code(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

/// The stored object's bytes, tags and content type, read straight from the local S3.
async fn stored(cloud: &TestCloud, media_id: &str) -> (Vec<u8>, Vec<(String, String)>, String) {
    let s3 = cloud.s3();
    let key = format!("media/{media_id}");
    let obj = s3
        .get_object()
        .bucket(cloud.media_bucket())
        .key(&key)
        .send()
        .await
        .expect("the object is stored");
    let content_type = obj.content_type().unwrap_or_default().to_owned();
    let body = obj.body.collect().await.unwrap().into_bytes().to_vec();
    let tags = cloud.media_tags(media_id).await;
    (body, tags, content_type)
}

fn tag(value: &str) -> Vec<(String, String)> {
    vec![("courier-media".to_owned(), value.to_owned())]
}

#[tokio::test]
async fn a_10_mib_file_goes_up_encrypted_and_only_members_get_it_back() {
    let cloud = TestCloud::shared();
    let alice = Device::open(cloud).await;
    let mut bob = Device::open(cloud).await;
    let carol = Device::open(cloud).await;
    let chat = alice
        .client
        .initiate_direct_chat(&bob.creds.user_id, None)
        .await
        .unwrap()
        .session_id;

    let plain = random_bytes(10 * MIB);
    let started = Instant::now();
    let (sent, media) = alice
        .client
        .send_file(
            &chat,
            OutgoingFile {
                bytes: plain.clone(),
                content_type: "video/mp4".into(),
                file_name: Some("holiday.mp4".into()),
                caption: Some("the beach".into()),
            },
            None,
        )
        .await
        .unwrap();
    let upload_time = started.elapsed();

    // What S3 holds: ciphertext of the same length plus the tag, as an opaque type, attached.
    let (object, tags, content_type) = stored(cloud, &media.media_id).await;
    assert_eq!(object.len(), plain.len() + 16);
    assert_ne!(&object[..plain.len()], plain.as_slice());
    let same = object.iter().zip(&plain).filter(|(a, b)| a == b).count();
    assert!(same < plain.len() / 100, "{same} bytes in place");
    for at in [0, 4096, 5 * MIB, plain.len() - 64] {
        let window = &plain[at..at + 32];
        assert!(
            !object.windows(32).any(|w| w == window),
            "plaintext at {at} is in the object"
        );
    }
    assert_eq!(content_type, "application/octet-stream");
    assert_eq!(tags, tag("attached"));

    // Bob, a member, gets the message (its descriptor decrypted end to end) and the file.
    let m = bob.message(&sent.msg_id).await;
    assert_eq!(m.kind, MessageKind::Media);
    assert_eq!(m.attachments, vec![media.media_id.clone()]);
    assert!(!m.payload.contains(&media.key), "the key travels encrypted");
    let got = MediaPayload::from_message(&m).expect("a media descriptor");
    assert_eq!(got, media);
    assert_eq!(got.file_name.as_deref(), Some("holiday.mp4"));
    assert_eq!(got.caption.as_deref(), Some("the beach"));
    assert_eq!(got.content_type, "video/mp4");
    let started = Instant::now();
    let file = bob.client.download_file(&got, None).await.unwrap();
    let download_time = started.elapsed();
    assert!(file == plain, "the downloaded file is not byte-identical");
    eprintln!(
        "10 MiB: encrypt+upload+send {upload_time:?}, download+verify+decrypt {download_time:?}"
    );

    // The uploader may download it too; Carol, in no chat it was sent to, may not, even with
    // the descriptor in hand.
    assert!(
        alice
            .client
            .get_media_download(&media.media_id)
            .await
            .is_ok()
    );
    assert_eq!(
        code(carol.client.get_media_download(&media.media_id).await),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(
        code(carol.client.download_file(&got, None).await),
        Some(ErrorCode::Forbidden)
    );
}

#[tokio::test]
async fn a_17_mib_upload_is_refused() {
    let cloud = TestCloud::shared();
    let alice = Device::open(cloud).await;
    let bob = Device::open(cloud).await;
    let chat = alice
        .client
        .initiate_direct_chat(&bob.creds.user_id, None)
        .await
        .unwrap()
        .session_id;
    assert_eq!(
        code(
            alice
                .client
                .create_media_upload("application/octet-stream", 17 * MIB as u64)
                .await
        ),
        Some(ErrorCode::PayloadTooLarge)
    );
    // Through the SDK: refused before anything is uploaded or sent.
    let r = alice
        .client
        .send_file(
            &chat,
            OutgoingFile {
                bytes: vec![0; 17 * MIB],
                content_type: "video/mp4".into(),
                ..OutgoingFile::default()
            },
            None,
        )
        .await;
    assert_eq!(code(r), Some(ErrorCode::PayloadTooLarge));
    let page = alice
        .client
        .read_new_messages(&chat, None, None)
        .await
        .unwrap();
    assert!(page.messages.iter().all(|m| m.kind != MessageKind::Media));
    // Bad declarations.
    assert_eq!(
        code(alice.client.create_media_upload("image/png", 0).await),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(alice.client.create_media_upload("not a type", 10).await),
        Some(ErrorCode::BadRequest)
    );
}

#[tokio::test]
async fn only_your_own_uploaded_media_can_be_attached_and_unknown_media_is_not_found() {
    let cloud = TestCloud::shared();
    let alice = Device::open(cloud).await;
    let bob = Device::open(cloud).await;
    let chat = alice
        .client
        .initiate_direct_chat(&bob.creds.user_id, None)
        .await
        .unwrap()
        .session_id;
    // Bob uploads (and never sends) a file: stored tagged unattached, for the lifecycle rule.
    let body = random_bytes(1000);
    let upload = bob
        .client
        .create_media_upload("application/octet-stream", 1000)
        .await
        .unwrap();
    assert!(upload.expires_in_seconds > 0);
    upload_bytes(&upload, body.clone(), None).await.unwrap();
    let (object, tags, _) = stored(cloud, &upload.media_id).await;
    assert_eq!(object, body);
    assert_eq!(tags, tag("unattached"));

    let attach = |ids: Vec<String>| NewMessage {
        session_id: chat.clone(),
        kind: MessageKind::Media,
        payload: "x".into(),
        attachments: ids,
        client_msg_id: None,
    };
    // Alice attaching Bob's media: FORBIDDEN, and it stays unattached and Bob's alone.
    assert_eq!(
        code(
            alice
                .client
                .send(attach(vec![upload.media_id.clone()]))
                .await
        ),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(stored(cloud, &upload.media_id).await.1, tag("unattached"));
    assert_eq!(
        code(alice.client.get_media_download(&upload.media_id).await),
        Some(ErrorCode::Forbidden)
    );
    // Unknown and malformed ids.
    let unknown = courier_core::media::MediaId::generate().to_string();
    assert_eq!(
        code(alice.client.get_media_download(&unknown).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(alice.client.send(attach(vec![unknown])).await),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(alice.client.get_media_download("../media/x").await),
        Some(ErrorCode::BadRequest)
    );
    // Alice's own upload that never happened: refused too.
    let never = alice
        .client
        .create_media_upload("image/png", 10)
        .await
        .unwrap();
    assert_eq!(
        code(
            alice
                .client
                .send(attach(vec![never.media_id.clone()]))
                .await
        ),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(alice.client.get_media_download(&never.media_id).await),
        Some(ErrorCode::NotFound)
    );
}

fn courier(cloud: &TestCloud, config: &Path, args: &[&str]) -> (bool, String, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let out = Command::new(target.join("debug/courier"))
        .args(args)
        .env("COURIER_HTTP_URL", &cloud.http_url)
        .env("COURIER_WS_URL", &cloud.ws_url)
        .env("COURIER_CONFIG_DIR", config)
        .output()
        .expect("the courier binary runs (cargo build --workspace --bins)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_user(cloud: &TestCloud) -> (PathBuf, String) {
    let config = temp_dir("cli");
    let phone = fresh_phone();
    let (ok, _, err) = courier(cloud, &config, &["register", &phone]);
    assert!(ok, "{err}");
    let code = cloud.code_for(&phone).await.unwrap();
    let (ok, _, err) = courier(cloud, &config, &["verify", &code]);
    assert!(ok, "{err}");
    (config, phone)
}

#[tokio::test]
async fn the_cli_sends_a_file_and_the_inbox_saves_it_identical() {
    let cloud = TestCloud::shared();
    let (alice, _) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let dir = temp_dir("files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.pdf");
    let bytes = random_bytes(300_000);
    std::fs::write(&path, &bytes).unwrap();

    let (ok, out, err) = courier(
        cloud,
        &alice,
        &[
            "send",
            &bob_phone,
            "--file",
            path.to_str().unwrap(),
            "Q3",
            "numbers",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("sent report.pdf (300000 bytes)"), "{out}");

    let save = dir.join("saved");
    let (ok, out, err) = courier(
        cloud,
        &bob,
        &[
            "inbox",
            "--timeout",
            "30",
            "--save-dir",
            save.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("[file report.pdf, 300000 bytes] Q3 numbers"),
        "{out}"
    );
    let saved = save.join("report.pdf");
    assert!(
        out.contains(&format!("saved to {}", saved.display())),
        "{out}"
    );
    assert!(
        std::fs::read(&saved).unwrap() == bytes,
        "saved file differs"
    );

    // Default place: <config dir>/downloads; a second copy never overwrites the first.
    let (ok, _, err) = courier(
        cloud,
        &alice,
        &["send", &bob_phone, "--file", path.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = courier(cloud, &bob, &["inbox", "--json", "--timeout", "30"]);
    assert!(ok, "{err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    let to = bob.join("downloads").join("report.pdf");
    assert_eq!(line["savedTo"], to.to_str().unwrap(), "{out}");
    assert_eq!(line["file"]["fileName"], "report.pdf");
    assert!(std::fs::read(&to).unwrap() == bytes);

    // A missing file is a clear error, nothing sent.
    let (ok, _, err) = courier(
        cloud,
        &alice,
        &["send", &bob_phone, "--file", "/nonexistent/x.png"],
    );
    assert!(!ok);
    assert!(err.contains("reading /nonexistent/x.png"), "{err}");
}
