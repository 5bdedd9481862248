//! Courier Web in headless Chromium: `web/tests/browser.test.mjs` (playwright-core driving
//! Debian's `/usr/bin/chromium`) against this process's local cloud, which serves the built
//! client (`web/dist`) at `/`. The script links the page to a CLI user, exchanges messages,
//! ticks, a group and an image with another CLI user, typing, a reply, reactions, an edit and
//! deletions both ways with that user's device, blocking, unblocking and reporting that user
//! (the report is then looked up here, in the local S3), and checks that nothing the page sent
//! carries plaintext. Disappearing messages: the page turns them on, Bob's device sees it, Bob
//! turns them off; on this cloud's short test timer (`DisappearingTestSeconds`) messages are
//! seen to leave the page and its IndexedDB at their expiry. Its screenshot of the conversation goes to
//! web/test-results/web-conversation.png (docs/images/web-conversation.png is one of them).
//!
//! Builds nothing: `./dev test` builds the binaries and the web client first (`./dev web`).

use courier_tests::{TestCloud, repo_root};
use serde_json::Value;
use std::process::Command;
use std::time::Instant;

/// The cloud's extra disappearing timer (the template's `DisappearingTestSeconds`): long enough
/// for Bob's CLI to send under it and the page to show both messages on a busy machine, short
/// enough to wait for.
const TEST_TIMER_SECONDS: u32 = 8;

/// The report the page filed, as stored for moderation under `reports/` in the media bucket: the
/// one whose reporter is `reporter` (each run's users are new). Only a moderation role may read
/// these on AWS; the test reads the local S3 directly.
async fn stored_report(cloud: &TestCloud, reporter: &str) -> Value {
    let s3 = cloud.s3();
    let listed = s3
        .list_objects_v2()
        .bucket(cloud.media_bucket())
        .prefix("reports/")
        .send()
        .await
        .expect("the media bucket lists its reports");
    let mut found = Vec::new();
    for object in listed.contents() {
        let key = object.key().expect("an object has a key");
        let body = cloud.media_object(key).await;
        let report: Value = serde_json::from_slice(&body).expect("a report is JSON");
        if report["reporter"] == reporter {
            found.push(report);
        }
    }
    assert_eq!(found.len(), 1, "one report by {reporter}: {found:?}");
    found.remove(0)
}

/// Every object of the media bucket (the history bundle the phone sent the page is one) and
/// every string of every item of the stack's tables, as text.
async fn stored_text(cloud: &TestCloud) -> String {
    let mut all = String::new();
    let s3 = cloud.s3();
    let mut pages = s3
        .list_objects_v2()
        .bucket(cloud.media_bucket())
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for object in page.expect("the media bucket lists").contents() {
            let key = object.key().expect("an object has a key");
            let body = cloud.media_object(key).await;
            all.push_str(&String::from_utf8_lossy(&body));
        }
    }
    let db = cloud.dynamodb();
    let tables = db.list_tables().send().await.expect("the tables list");
    for table in tables
        .table_names()
        .iter()
        .filter(|t| t.starts_with(&format!("{}-", cloud.resource_prefix)))
    {
        let mut pages = db.scan().table_name(table).into_paginator().send();
        while let Some(page) = pages.next().await {
            for item in page.expect("a table scans").items() {
                all.push_str(&format!("{item:?}"));
            }
        }
    }
    all
}

#[test]
fn the_web_client_links_chats_and_sends_only_ciphertext() {
    let root = repo_root();
    let missing = [
        (root.join("web/dist/index.html"), "./dev web"),
        (
            root.join("web/node_modules/playwright-core/package.json"),
            "infra/install",
        ),
        ("/usr/bin/chromium".into(), "infra/install (apt: chromium)"),
    ];
    for (path, fix) in &missing {
        assert!(
            path.exists(),
            "{} is missing: run {fix} (./dev test does)",
            path.display()
        );
    }
    // A cloud of its own for the test timer: this binary's only test, so it costs no more than
    // the shared one would.
    let cloud = &TestCloud::start(&[&format!("DisappearingTestSeconds={TEST_TIMER_SECONDS}")])
        .expect("the local cloud starts");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let started = Instant::now();
    let out = Command::new("node")
        .arg(root.join("web/tests/browser.test.mjs"))
        .current_dir(&root)
        .env("COURIER_HTTP_URL", &cloud.http_url)
        .env("COURIER_WS_URL", &cloud.ws_url)
        .env("COURIER_BIN", target.join("debug/courier"))
        .env(
            "COURIER_DISAPPEARING_TEST_SECONDS",
            TEST_TIMER_SECONDS.to_string(),
        )
        .output()
        .expect("node runs (infra/install puts Node.js in place)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "the browser test failed after {:?} (web/test-results/ has the page):\n{stdout}\n{stderr}",
        started.elapsed()
    );
    assert!(
        stdout.contains("no plaintext in anything the page sent"),
        "{stdout}"
    );

    // What the page reported, and with which of Bob's messages as it showed them: the same is
    // stored for moderation.
    let filed: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .map(|j| serde_json::from_str(j).expect("the REPORT line is JSON"))
        .expect("the browser test says what it reported");
    let reporter = filed["reporter"].as_str().expect("a reporter");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let report = runtime.block_on(stored_report(cloud, reporter));
    assert_eq!(report["reported"], filed["reported"], "{report}");
    let stored: Vec<(&Value, &Value, &Value)> = report["messages"]
        .as_array()
        .expect("the report's messages")
        .iter()
        .map(|m| (&m["msgId"], &m["text"], &m["sessionId"]))
        .collect();
    let expected: Vec<(&Value, &Value, &Value)> = filed["messages"]
        .as_array()
        .expect("the attached messages")
        .iter()
        .map(|m| (&m["msgId"], &m["text"], &filed["sessionId"]))
        .collect();
    assert_eq!(expected.len(), 5, "{filed}");
    assert_eq!(
        stored, expected,
        "the report holds what the page showed: {report}"
    );
    // The phone's history reached the page as ciphertext only: neither the bundle in the media
    // bucket nor anything in the tables holds its messages in clear. (The control: a reported
    // message, which the report stores in clear in the same bucket, is found.)
    let synced: Vec<String> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SYNCED "))
        .map(|j| serde_json::from_str(j).expect("the SYNCED line is JSON"))
        .expect("the browser test says what the phone synced");
    assert_eq!(synced.len(), 2);
    let stored = runtime.block_on(stored_text(cloud));
    let control = filed["messages"][0]["text"]
        .as_str()
        .expect("a reported text");
    assert!(stored.contains(control), "the scan reads the media bucket");
    for text in &synced {
        assert!(
            !stored.contains(text.as_str()),
            "in clear on the server: {text}"
        );
    }
}
