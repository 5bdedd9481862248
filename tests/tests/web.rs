//! Courier Web in headless Chromium: `web/tests/browser.test.mjs` (playwright-core driving
//! Debian's `/usr/bin/chromium`) against this process's local cloud, which serves the built
//! client (`web/dist`) at `/`. The script links the page to a CLI user, exchanges messages,
//! ticks, a group and an image with another CLI user, typing, a reply, reactions, an edit and
//! deletions both ways with that user's device, and checks that nothing the page sent carries
//! plaintext. Its screenshot of the conversation goes to
//! web/test-results/web-conversation.png (docs/images/web-conversation.png is one of them).
//!
//! Builds nothing: `./dev test` builds the binaries and the web client first (`./dev web`).

use courier_tests::{TestCloud, repo_root};
use std::process::Command;
use std::time::Instant;

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
    let cloud = TestCloud::shared();
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
}
