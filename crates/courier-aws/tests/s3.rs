//! `S3Objects` against moto server (the local cloud's S3): a presigned `PUT` carrying the
//! headers it was signed with stores the bytes with their tags, sizes and tags read back, a
//! presigned `GET` returns the same bytes, deletion removes the object.
//!
//! moto is `COURIER_MOTO_SERVER`, else `.courier-local/venv/bin/moto_server` (installed by
//! `infra/install`), started on a free loopback port; it dies with the test process
//! (`PR_SET_PDEATHSIG`). If `AWS_ENDPOINT_URL_S3` is set, that server is used instead.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use courier_aws::s3::S3Objects;
use courier_core::ports::ObjectStore;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn moto_endpoint() -> String {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL_S3")
        && !url.is_empty()
    {
        return url;
    }
    let bin = std::env::var_os("COURIER_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../.courier-local/venv/bin/moto_server")
        });
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(&bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    // The signal fires when the spawning thread ends: spawn from one that never does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    });
    let child = rx
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("starting {}: {e} (run infra/install)", bin.display()));
    // It lives as long as the test process.
    Box::leak(Box::new(child));
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    url
}

#[tokio::test]
async fn presigned_upload_tags_size_download_and_delete() {
    let endpoint = moto_endpoint();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let bucket = format!("media-{}", uuid::Uuid::new_v4().simple());
    client.create_bucket().bucket(&bucket).send().await.unwrap();
    let objects = S3Objects::new(client.clone(), &bucket);
    let key = "media/m_0123456789abcdef0123456789abcdef";
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(objects.size(key).await.unwrap(), None);

    let put = objects
        .presign_put(
            key,
            "application/octet-stream",
            body.len() as u64,
            &[("courier-media", "unattached")],
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(put.expires_in_seconds, 300);
    assert!(
        put.url.starts_with(&format!("{endpoint}/{bucket}/{key}?")),
        "{}",
        put.url
    );
    assert!(put.url.contains("X-Amz-Signature="));
    // Size, type and tags are signed: S3 refuses an upload that changes any of them (moto
    // does not check signatures, so this is as far as a local test can see).
    let signed = put
        .url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("signed headers")
        .replace("%3B", ";");
    for h in ["content-length", "content-type", "x-amz-tagging"] {
        assert!(signed.split(';').any(|s| s == h), "{h} not in {signed}");
    }
    let header = |name: &str| {
        put.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("application/octet-stream"));
    assert_eq!(header("content-length"), Some("100000"));
    assert_eq!(header("x-amz-tagging"), Some("courier-media=unattached"));

    // What a client does: PUT the bytes with every header it was given.
    let http = reqwest::Client::new();
    let mut req = http.put(&put.url).body(body.clone());
    for (k, v) in &put.headers {
        if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
            req = req.header(k, v);
        }
    }
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());

    assert_eq!(objects.size(key).await.unwrap(), Some(body.len() as u64));
    let tags = |c: aws_sdk_s3::Client, b: String| async move {
        let out = c
            .get_object_tagging()
            .bucket(b)
            .key(key)
            .send()
            .await
            .unwrap();
        out.tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tags(client.clone(), bucket.clone()).await,
        vec![("courier-media".to_owned(), "unattached".to_owned())]
    );
    objects
        .set_tags(key, &[("courier-media", "attached")])
        .await
        .unwrap();
    assert_eq!(
        tags(client.clone(), bucket.clone()).await,
        vec![("courier-media".to_owned(), "attached".to_owned())]
    );

    let get = objects
        .presign_get(key, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(get.method, "GET");
    let got = http.get(&get.url).send().await.unwrap();
    assert!(got.status().is_success());
    assert_eq!(got.bytes().await.unwrap().as_ref(), body.as_slice());

    objects.delete(key).await.unwrap();
    assert_eq!(objects.size(key).await.unwrap(), None);
    // Deleting what is gone is not an error.
    objects.delete(key).await.unwrap();
}
