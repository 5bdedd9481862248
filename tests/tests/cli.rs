//! The `courier` CLI against the local cloud: register, verify with the code from the SMS
//! outbox, whoami; credentials are kept with mode 0600.

use courier_tests::{TestCloud, fresh_phone, repo_root};
use std::process::Command;

fn courier(cloud: &TestCloud, config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
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

#[tokio::test]
async fn register_verify_whoami() {
    let cloud = TestCloud::shared();
    let config =
        std::env::temp_dir().join(format!("courier-cli-{}", uuid::Uuid::new_v4().simple()));
    let phone = fresh_phone();

    let (ok, _, err) = courier(cloud, &config, &["whoami"]);
    assert!(!ok);
    assert!(err.contains("not signed in"), "{err}");

    let (ok, out, err) = courier(cloud, &config, &["register", &phone]);
    assert!(ok, "{err}");
    assert!(out.contains("code was sent"), "{out}");

    let (ok, _, err) = courier(cloud, &config, &["verify", "12345"]);
    assert!(!ok);
    assert!(err.contains("BAD_REQUEST"), "{err}");

    let code = cloud.code_for(&phone).await.unwrap();
    let (ok, out, err) = courier(
        cloud,
        &config,
        &["verify", &code, "--device-name", "laptop"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Verified"), "{out}");

    let creds = config.join("credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();

    let (ok, out, err) = courier(cloud, &config, &["whoami"]);
    assert!(ok, "{err}");
    assert!(out.contains(&phone), "{out}");
    assert!(out.contains(stored["userId"].as_str().unwrap()), "{out}");
    assert!(out.contains("key accepted"), "{out}");

    // The number moves to another phone: this CLI's key is refused, and whoami says so.
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    let device = courier_core::protocol::DeviceInfo {
        name: "new".into(),
        platform: courier_core::protocol::Platform::Ios,
    };
    cloud
        .accounts()
        .verify(&phone, &code, device)
        .await
        .unwrap();
    let (ok, _, err) = courier(cloud, &config, &["whoami"]);
    assert!(!ok);
    assert!(err.contains("key refused"), "{err}");
}

/// Registers a CLI user in its own config dir; returns (config dir, phone).
/// Runs `courier args` as `config`, which must succeed; its stdout.
fn succeeds(cloud: &TestCloud, config: &std::path::Path, args: &[&str]) -> String {
    let (ok, out, err) = courier(cloud, config, args);
    assert!(ok, "courier {args:?}: {err}");
    out
}

async fn cli_user(cloud: &TestCloud) -> (std::path::PathBuf, String) {
    let config =
        std::env::temp_dir().join(format!("courier-cli-{}", uuid::Uuid::new_v4().simple()));
    let phone = fresh_phone();
    let (ok, _, err) = courier(cloud, &config, &["register", &phone]);
    assert!(ok, "{err}");
    let code = cloud.code_for(&phone).await.unwrap();
    let (ok, _, err) = courier(cloud, &config, &["verify", &code]);
    assert!(ok, "{err}");
    (config, phone)
}

#[tokio::test]
async fn send_inbox_and_chat_between_two_cli_users() {
    let cloud = TestCloud::shared();
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;

    let (ok, out, err) = courier(cloud, &alice, &["send", &bob_phone, "hello", "bob"]);
    assert!(ok, "{err}");
    assert!(out.contains("sent msgId="), "{out}");

    let (ok, out, err) = courier(cloud, &bob, &["inbox", "--json", "--timeout", "20"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].to_string().contains("hello bob"), "{out}");
    // Already seen: a second inbox shows nothing new.
    let (ok, out, _) = courier(cloud, &bob, &["inbox", "--json", "--timeout", "20"]);
    assert!(ok);
    assert!(out.trim().is_empty(), "{out}");

    // Bob answers through `chat`, reading lines from a pipe (it must exit successfully).
    let (stdout, _) = chat_typing(cloud, &bob, &alice_phone, &["hi alice, from chat"]).await;
    assert!(stdout.contains("hi alice, from chat"), "{stdout}");
    assert!(stdout.contains('✓'), "the sent tick is shown: {stdout}");

    let (ok, out, err) = courier(cloud, &alice, &["inbox", "--timeout", "20"]);
    assert!(ok, "{err}");
    assert!(out.contains("hi alice, from chat"), "{out}");
}

/// Runs `courier chat <with>` as `config`, typing `lines` into it; its stdout and stderr.
async fn chat_typing(
    cloud: &TestCloud,
    config: &std::path::Path,
    with: &str,
    lines: &[&str],
) -> (String, String) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let mut child = Command::new(target.join("debug/courier"))
        .args(["chat", with])
        .env("COURIER_HTTP_URL", &cloud.http_url)
        .env("COURIER_WS_URL", &cloud.ws_url)
        .env("COURIER_CONFIG_DIR", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[tokio::test]
async fn chat_replies_reacts_edits_and_deletes_for_everyone() {
    let cloud = TestCloud::shared();
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let (ok, _, err) = courier(cloud, &alice, &["send", &bob_phone, "lunch at 1?"]);
    assert!(ok, "{err}");

    let (out, err) = chat_typing(
        cloud,
        &bob,
        &alice_phone,
        &[
            "/react 👍",
            "/reply yes, 1 works",
            "a typo here",
            "/edit no typo here",
            "secret plans",
            "/delete",
            "/frobnicate",
        ],
    )
    .await;
    assert!(out.contains("lunch at 1?"), "{out}");
    assert!(out.contains("me reacted 👍 to \"lunch at 1?\""), "{out}");
    assert!(out.contains("me ↪ \"lunch at 1?\": yes, 1 works"), "{out}");
    assert!(
        out.contains("me edited \"a typo here\": no typo here (edited)"),
        "{out}"
    );
    assert!(out.contains("me: This message was deleted"), "{out}");
    assert!(
        err.contains("/reply TEXT"),
        "an unknown command shows the help: {err}"
    );

    // Alice, syncing after all of it: the reaction, the reply and the edit say what they are;
    // the deleted message's words never reach her.
    let (ok, out, err) = courier(cloud, &alice, &["inbox", "--timeout", "20"]);
    assert!(ok, "{err}");
    for expected in [
        "(reacted 👍)",
        "(reply) yes, 1 works",
        "(edited) no typo here",
        "This message was deleted",
        "deleted a message for everyone",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    assert!(!out.contains("secret plans"), "{out}");

    // Alice deletes her question; Bob's history forgets it once he syncs.
    let (ok, out, err) = courier(cloud, &bob, &["history", &alice_phone]);
    assert!(ok, "{err}");
    assert!(out.contains("lunch at 1?"), "{out}");
    let (ok, out, err) = courier(cloud, &alice, &["history", &bob_phone, "--json"]);
    assert!(ok, "{err}");
    let question: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["text"] == "lunch at 1?")
        .unwrap_or_else(|| panic!("Alice's history has her question: {out}"));
    let (ok, _, err) = courier(
        cloud,
        &alice,
        &["delete", question["msgId"].as_str().unwrap()],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = courier(cloud, &bob, &["inbox", "--timeout", "20"]);
    assert!(ok, "{err}");
    let (ok, out, err) = courier(cloud, &bob, &["history", &alice_phone]);
    assert!(ok, "{err}");
    assert!(!out.contains("lunch at 1?"), "{out}");
    assert!(out.contains("This message was deleted"), "{out}");
}

#[tokio::test]
async fn people_are_shown_by_saved_name_else_profile_name_and_number() {
    let cloud = TestCloud::shared();
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let run = |config: &std::path::Path, args: &[&str]| succeeds(cloud, config, args);
    assert_eq!(
        run(&bob, &["profile", "--name", "Bob Builder"]).trim(),
        "Bob Builder"
    );
    assert_eq!(run(&bob, &["profile"]).trim(), "Bob Builder");

    // A stranger with no profile name is shown by number once they share a chat.
    run(&alice, &["send", &bob_phone, "one"]);
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(out.contains(&format!("{alice_phone}: one")), "{out}");
    // With a profile name: "~name (number)", as WhatsApp shows people one has not saved.
    run(&alice, &["profile", "--name", "Alice L"]);
    run(&alice, &["send", &bob_phone, "two"]);
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(
        out.contains(&format!("~Alice L ({alice_phone}): two")),
        "{out}"
    );
    // Saved: the name Bob gave her, and she is his contact on the server too.
    let saved = run(&bob, &["contacts", "add", &alice_phone, "Ally"]);
    assert!(saved.starts_with("saved Ally (u_"), "{saved}");
    run(&alice, &["send", &bob_phone, "three"]);
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(out.contains("Ally: three"), "{out}");
    let list = run(&bob, &["contacts", "list"]);
    assert!(
        list.starts_with(&format!("Ally  {alice_phone}  u_")),
        "{list}"
    );

    // Alice's chat with Bob names him.
    let (_, err) = chat_typing(cloud, &alice, &bob_phone, &["hello again"]).await;
    assert!(
        err.contains(&format!("Chatting with ~Bob Builder ({bob_phone})")),
        "{err}"
    );
    run(&bob, &["contacts", "remove", &alice_phone]);
    assert!(run(&bob, &["contacts", "list"]).trim().is_empty());
    let (ok, _, err) = courier(cloud, &bob, &["contacts", "remove", &alice_phone]);
    assert!(!ok && err.contains("not in your contacts"), "{err}");
}

#[tokio::test]
async fn block_report_and_unblock_with_the_cli() {
    let cloud = TestCloud::shared();
    let (alice, _) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let run = |config: &std::path::Path, args: &[&str]| succeeds(cloud, config, args);
    let alice_id = {
        let out = run(&alice, &["whoami"]);
        out.split_whitespace()
            .find(|w| w.starts_with("u_"))
            .unwrap_or_else(|| panic!("{out}"))
            .to_owned()
    };
    run(&alice, &["send", &bob_phone, "spam one"]);
    run(&alice, &["send", &bob_phone, "spam two"]);
    run(&bob, &["inbox", "--timeout", "20"]);

    let out = run(&bob, &["report", &alice_id, "--last", "2"]);
    assert!(
        out.starts_with("reported (2 messages attached; report "),
        "{out}"
    );
    let out = run(&bob, &["blocked"]);
    assert!(out.contains(&alice_id), "{out}");
    // Blocked: Alice's send is answered as ever, and never reaches Bob.
    run(&alice, &["send", &bob_phone, "spam three"]);
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(!out.contains("spam three"), "{out}");
    assert_eq!(run(&bob, &["unblock", &alice_id]).trim(), "unblocked");
    run(&alice, &["send", &bob_phone, "sorry"]);
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(
        out.contains("sorry") && !out.contains("spam three"),
        "{out}"
    );
    assert!(run(&bob, &["blocked"]).trim().is_empty());
}

#[tokio::test]
async fn disappearing_messages_with_the_cli() {
    // A cloud of its own, whose template allows a 10-second test timer.
    let cloud = TestCloud::start(&["DisappearingTestSeconds=10"]).expect("the local cloud starts");
    let cloud = &cloud;
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let run = |config: &std::path::Path, args: &[&str]| succeeds(cloud, config, args);

    let (ok, _, err) = courier(cloud, &alice, &["timer", "5m", &bob_phone]);
    assert!(!ok && err.contains("24h, 7d, 90d or off"), "{err}");
    // 60 s is a number the server does not allow: refused, and nothing changes.
    let (ok, _, err) = courier(cloud, &alice, &["timer", "60", &bob_phone]);
    assert!(!ok && err.contains("not changed"), "{err}");
    assert_eq!(
        run(&alice, &["timer", "10", &bob_phone]).trim(),
        "disappearing messages: 10 seconds"
    );
    // Stored between these two instants: it expires 10 s after a moment between them.
    let before = std::time::Instant::now();
    run(&alice, &["send", &bob_phone, "fleeting words"]);
    let sent = std::time::Instant::now();
    let out = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(
        out.contains("turned on disappearing messages: new messages disappear after 10 seconds")
            && out.contains("fleeting words"),
        "{out}"
    );
    // Kept until its expiry: checked only while it surely has not come (a loaded machine may
    // take longer than the timer to get here; the inbox above showed it either way).
    let history = run(&bob, &["history", &alice_phone]);
    if before.elapsed() < std::time::Duration::from_secs(8) {
        assert!(history.contains("fleeting words"), "{history}");
    }
    std::thread::sleep(std::time::Duration::from_secs(11).saturating_sub(sent.elapsed()));
    // Gone from both devices' histories (the sender's own copy too).
    for (who, peer) in [(&bob, &alice_phone), (&alice, &bob_phone)] {
        let out = run(who, &["history", peer]);
        assert!(!out.contains("fleeting words"), "{out}");
    }
    assert_eq!(
        run(&bob, &["timer", "off", &alice_phone]).trim(),
        "disappearing messages: off"
    );
    let out = run(&alice, &["inbox", "--timeout", "20"]);
    assert!(out.contains("turned off disappearing messages"), "{out}");
    run(&alice, &["send", &bob_phone, "lasting words"]);
    run(&bob, &["inbox", "--timeout", "20"]);
    std::thread::sleep(std::time::Duration::from_secs(11));
    assert!(run(&bob, &["history", &alice_phone]).contains("lasting words"));
}

#[tokio::test]
async fn group_commands_create_add_promote_remove_info_delete() {
    let cloud = TestCloud::shared();
    let (alice, _) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let (carol, carol_phone) = cli_user(cloud).await;
    let run = |config: &std::path::Path, args: &[&str]| succeeds(cloud, config, args);

    let group = run(
        &alice,
        &[
            "group",
            "create",
            "Climbers",
            &bob_phone,
            "--description",
            "weekends",
        ],
    )
    .trim()
    .to_owned();
    assert!(group.starts_with("g_"), "{group}");
    assert_eq!(
        run(&alice, &["group", "add", &group, &carol_phone]).trim(),
        "added"
    );
    assert_eq!(
        run(&alice, &["group", "add", &group, &carol_phone]).trim(),
        "already a member"
    );

    // Bob is not an admin: he may not remove Carol, and the CLI says why.
    let (ok, _, err) = courier(cloud, &bob, &["group", "remove", &group, &carol_phone]);
    assert!(!ok);
    assert!(err.contains("FORBIDDEN"), "{err}");

    assert_eq!(
        run(&alice, &["group", "promote", &group, &bob_phone]).trim(),
        "promoted"
    );
    let info = run(&carol, &["group", "info", &group]);
    assert!(info.starts_with("Climbers ("), "{info}");
    assert!(info.contains("weekends"), "{info}");
    assert_eq!(info.matches("admin").count(), 2, "{info}");
    assert_eq!(info.matches("  member").count(), 1, "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&run(&carol, &["group", "info", &group, "--json"])).unwrap();
    assert_eq!(json["members"].as_array().unwrap().len(), 3);

    // Carol leaves; Bob (now admin) sends through `courier send --session`; Alice deletes.
    assert!(run(&carol, &["group", "remove", &group, "me"]).contains("removed"));
    // Not a member any more: told NOT_FOUND, as anyone outside a group is (docs/security.md).
    let (ok, _, err) = courier(cloud, &carol, &["group", "info", &group]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    run(
        &bob,
        &["send", "--session", &group, "see", "you", "saturday"],
    );
    // `courier chat` works for a group: Alice types a line into it and sees Bob's message; Bob's
    // inbox shows hers and the group's changes.
    let mut child = Command::new(
        std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("debug/courier"),
    )
    .args(["chat", "--session", &group])
    .env("COURIER_HTTP_URL", &cloud.http_url)
    .env("COURIER_WS_URL", &cloud.ws_url)
    .env("COURIER_CONFIG_DIR", &alice)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "count me in").unwrap();
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let chat_out = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{chat_out}");
    assert!(chat_out.contains("see you saturday"), "{chat_out}");
    assert!(chat_out.contains("count me in"), "{chat_out}");
    let inbox = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(inbox.contains("count me in"), "{inbox}");
    assert!(
        inbox.contains("[group]") && inbox.contains("is now an admin"),
        "{inbox}"
    );
    assert_eq!(run(&alice, &["group", "delete", &group]).trim(), "deleted");
    let (ok, _, err) = courier(cloud, &bob, &["group", "info", &group]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
}

/// The safety number `courier verify-contact` prints (the three lines after its heading).
fn safety_number(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Safety number with"))
        .unwrap_or_else(|| panic!("no safety number in {out}"));
    let number = lines[at + 1..at + 4]
        .iter()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(number.split(' ').count(), 12, "{out}");
    assert!(
        number
            .split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    number
}

/// A new CLI device linked to `primary`'s account as a companion "laptop": `courier link` (its
/// code read from its output) approved by `courier devices approve` on `primary`. Its config
/// directory, what `courier link` printed and what `courier devices approve` printed.
async fn link_cli(
    cloud: &TestCloud,
    primary: &std::path::Path,
) -> (std::path::PathBuf, String, String) {
    let laptop =
        std::env::temp_dir().join(format!("courier-cli-{}", uuid::Uuid::new_v4().simple()));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let mut child = Command::new(target.join("debug/courier"))
        .args(["link", "--device-name", "laptop", "--timeout", "60"])
        .env("COURIER_HTTP_URL", &cloud.http_url)
        .env("COURIER_WS_URL", &cloud.ws_url)
        .env("COURIER_CONFIG_DIR", &laptop)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let code = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("courier link prints a code");
        if let Some(code) = line.strip_prefix("Link code: ") {
            break code.trim().to_owned();
        }
    };
    let (ok, approved, err) = courier(cloud, primary, &["devices", "approve", &code]);
    assert!(ok, "courier devices approve: {err}");
    assert!(
        approved.contains("approved") && approved.contains("laptop"),
        "{approved}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let link_out = reader.join().unwrap();
    assert!(status.success(), "{link_out}");
    (laptop, link_out, approved)
}

#[tokio::test]
async fn link_devices_verify_contact_and_a_changed_identity() {
    let cloud = TestCloud::shared();
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, bob_phone) = cli_user(cloud).await;
    let run = |config: &std::path::Path, args: &[&str]| succeeds(cloud, config, args);

    // Alice's phone has a chat with Bob in its history before she links a laptop.
    run(&bob, &["send", &alice_phone, "the", "kettle", "is", "on"]);
    let inbox = run(&alice, &["inbox", "--timeout", "20"]);
    assert!(inbox.contains("the kettle is on"), "{inbox}");
    run(&alice, &["send", &bob_phone, "two", "sugars", "please"]);

    // A laptop links to Alice's account: `courier link` shows the code (and a QR code),
    // Alice approves it from her primary device, the laptop gets its credentials; the phone
    // then sends it that history, encrypted, and the laptop imports it.
    let (laptop, link_out, approved) = link_cli(cloud, &alice).await;
    assert!(
        link_out.contains('█') || link_out.contains('▀'),
        "a QR code: {link_out}"
    );
    assert!(link_out.contains("Linked."), "{link_out}");
    assert!(
        approved.contains("sent 2 messages in 1 chat to the new device"),
        "{approved}"
    );
    assert!(
        link_out.contains("synced 2 messages in 1 chat from the phone"),
        "{link_out}"
    );
    let history = run(&laptop, &["history"]);
    for text in ["the kettle is on", "two sugars please"] {
        let line = history
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("{text} not in the laptop's history: {history}"));
        assert!(line.ends_with("(synced from your phone)"), "{line}");
    }
    let phone_history = run(&alice, &["history"]);
    assert!(
        phone_history.contains("the kettle is on"),
        "{phone_history}"
    );
    assert!(!phone_history.contains("synced"), "{phone_history}");

    let list = run(&alice, &["devices", "list"]);
    assert_eq!(list.matches("primary").count(), 1, "{list}");
    assert!(
        list.contains("laptop") && list.contains("companion"),
        "{list}"
    );
    assert!(list.contains("(this device)"), "{list}");
    assert!(
        !list.contains("(no keys yet)"),
        "both devices published keys: {list}"
    );
    let laptop_id = list
        .lines()
        .find(|l| l.contains("companion"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    // Only the primary sends history: the laptop cannot.
    let phone_id = list
        .lines()
        .find(|l| l.contains("primary"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (ok, _, err) = courier(cloud, &laptop, &["devices", "send-history", &phone_id]);
    assert!(!ok && err.contains("only the primary device"), "{err}");

    // Both of Alice's devices read Bob's message; Bob reads Alice's, all encrypted.
    run(&bob, &["send", &alice_phone, "hello", "both", "devices"]);
    for config in [&alice, &laptop] {
        let inbox = run(config, &["inbox", "--timeout", "20"]);
        assert!(inbox.contains("hello both devices"), "{inbox}");
    }

    // Both sides print the same safety number.
    let from_alice = safety_number(&run(&alice, &["verify-contact", &bob_phone]));
    let from_bob = safety_number(&run(&bob, &["verify-contact", &alice_phone]));
    assert_eq!(from_alice, from_bob);

    // Alice removes the laptop: it is gone from the list and its key is refused.
    assert!(run(&alice, &["devices", "remove", &laptop_id]).contains("removed"));
    let list = run(&alice, &["devices", "list"]);
    assert!(!list.contains(&laptop_id), "{list}");
    let (ok, _, err) = courier(cloud, &laptop, &["whoami"]);
    assert!(!ok && err.contains("key refused"), "{err}");

    // Bob moves to a new phone (new keys): Alice's send is refused with a warning until she
    // checks the new safety number and accepts it.
    run(&alice, &["send", &bob_phone, "before"]);
    let (ok, _, err) = courier(cloud, &bob, &["register", &bob_phone]);
    assert!(ok, "{err}");
    let code = cloud.code_for(&bob_phone).await.unwrap();
    run(&bob, &["verify", &code]);
    let (ok, _, err) = courier(cloud, &alice, &["send", &bob_phone, "are", "you", "there"]);
    assert!(!ok, "a send to a changed identity is refused");
    assert!(err.contains("WARNING: the identity"), "{err}");
    let (ok, _, err) = courier(cloud, &alice, &["verify-contact", &bob_phone]);
    assert!(ok && err.contains("WARNING: the identity"), "{err}");
    let accepted = run(&alice, &["verify-contact", &bob_phone, "--accept"]);
    assert!(accepted.contains("Trusted"), "{accepted}");
    assert_eq!(
        safety_number(&accepted),
        safety_number(&run(&bob, &["verify-contact", &alice_phone]))
    );
    run(&alice, &["send", &bob_phone, "welcome", "back"]);
    let inbox = run(&bob, &["inbox", "--timeout", "20"]);
    assert!(inbox.contains("welcome back"), "{inbox}");
    assert!(!inbox.contains("are you there"), "{inbox}");
}

/// The stored credentials of a CLI user.
fn cli_credentials(config: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(config.join("credentials.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn status_post_view_viewers_and_remove_with_the_cli() {
    let cloud = TestCloud::shared();
    let (alice, alice_phone) = cli_user(cloud).await;
    let (bob, _) = cli_user(cloud).await;
    let (alice_creds, bob_creds) = (cli_credentials(&alice), cli_credentials(&bob));
    // Bob in Alice's contacts (the CLI has no contacts command yet): her status audience.
    let session =
        courier_client::Session::connect(&cloud.ws_url, alice_creds["apiKey"].as_str().unwrap())
            .await
            .unwrap();
    session
        .request(
            "updateContacts",
            serde_json::json!({ "add": [bob_creds["userId"]] }),
        )
        .await
        .unwrap();

    let (ok, out, err) = courier(
        cloud,
        &alice,
        &["status", "post", "off", "to", "the", "beach"],
    );
    assert!(ok, "{err}");
    let id = out
        .split_whitespace()
        .nth(1)
        .expect("posted <statusId> ...")
        .to_owned();

    let (ok, out, err) = courier(cloud, &bob, &["status", "view", &alice_phone, "--json"]);
    assert!(ok, "{err}");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(seen["statusId"], id.as_str());
    assert_eq!(seen["text"], "off to the beach", "decrypted");

    let (ok, out, err) = courier(cloud, &alice, &["status", "viewers", &id]);
    assert!(ok, "{err}");
    assert!(out.contains(bob_creds["userId"].as_str().unwrap()), "{out}");
    let (ok, _, err) = courier(cloud, &bob, &["status", "viewers", &id]);
    assert!(!ok);
    assert!(err.contains("NOT_FOUND"), "{err}");

    let (ok, _, err) = courier(cloud, &alice, &["status", "remove", &id]);
    assert!(ok, "{err}");
    let (ok, out, err) = courier(cloud, &bob, &["status", "view", &alice_phone]);
    assert!(ok, "{err}");
    assert!(out.contains("no status"), "{out}");

    // A photo status: uploaded encrypted, Bob's `status view` downloads, decrypts and saves it.
    let files = std::env::temp_dir().join(format!(
        "courier-cli-status-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&files).unwrap();
    let photo: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let photo_path = files.join("sunset.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    let (ok, out, err) = courier(
        cloud,
        &alice,
        &[
            "status",
            "post",
            "--file",
            photo_path.to_str().unwrap(),
            "golden",
            "hour",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("posted "), "{out}");
    let saved_dir = files.join("saved");
    let (ok, out, err) = courier(
        cloud,
        &bob,
        &[
            "status",
            "view",
            &alice_phone,
            "--json",
            "--save-dir",
            saved_dir.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let seen: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(seen["caption"], "golden hour");
    let saved = std::path::PathBuf::from(seen["savedTo"].as_str().expect("saved"));
    assert!(saved.starts_with(&saved_dir), "{}", saved.display());
    assert!(std::fs::read(&saved).unwrap() == photo, "byte-identical");
}

#[tokio::test]
async fn two_step_verification_with_the_cli() {
    let cloud = TestCloud::shared();
    let (old_phone, phone) = cli_user(cloud).await;
    let pin_file = old_phone.join("pin.txt");
    std::fs::write(&pin_file, "482913\n").unwrap();
    let wrong_file = old_phone.join("wrong.txt");
    std::fs::write(&wrong_file, "000000\n").unwrap();
    let (ok, out, err) = courier(
        cloud,
        &old_phone,
        &["pin", "set", "--pin-file", pin_file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Two-step verification is on"), "{out}");
    assert!(!out.contains("482913") && !err.contains("482913"));
    let old_creds = cli_credentials(&old_phone);

    // A new phone for the same number: the code alone is not enough (no terminal to ask on).
    let new_phone =
        std::env::temp_dir().join(format!("courier-cli-{}", uuid::Uuid::new_v4().simple()));
    let (ok, _, err) = courier(cloud, &new_phone, &["register", &phone]);
    assert!(ok, "{err}");
    let code = cloud.code_for(&phone).await.unwrap();
    let (ok, _, err) = courier(cloud, &new_phone, &["verify", &code]);
    assert!(!ok);
    assert!(err.contains("PIN_REQUIRED"), "{err}");
    let (ok, _, err) = courier(
        cloud,
        &new_phone,
        &["verify", &code, "--pin-file", wrong_file.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("wrong PIN; 9 tries left"), "{err}");
    // With the PIN, the same code moves the account.
    let (ok, out, err) = courier(
        cloud,
        &new_phone,
        &["verify", &code, "--pin-file", pin_file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Verified"), "{out}");
    assert_eq!(cli_credentials(&new_phone)["userId"], old_creds["userId"]);
    // The reminder: `pin check` says whether the PIN is right (and fails when it is not).
    let (ok, out, err) = courier(
        cloud,
        &new_phone,
        &["pin", "check", "--pin-file", pin_file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(out.contains("Correct"), "{out}");
    let (ok, _, err) = courier(
        cloud,
        &new_phone,
        &["pin", "check", "--pin-file", wrong_file.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err.contains("wrong: that is not your registration PIN"),
        "{err}"
    );

    // A linked CLI changes the PIN only with the current one (it has no terminal to ask on,
    // so without --current-pin-file it stops at the question).
    let (laptop, _, _) = link_cli(cloud, &new_phone).await;
    let new_pin_file = laptop.join("new-pin.txt");
    std::fs::write(&new_pin_file, "271828\n").unwrap();
    let new_pin = ["pin", "set", "--pin-file", new_pin_file.to_str().unwrap()];
    let (ok, _, err) = courier(cloud, &laptop, &new_pin);
    assert!(!ok);
    assert!(err.contains("needs the current PIN"), "{err}");
    let with_current = |current: &std::path::Path| {
        let mut args = new_pin.to_vec();
        args.extend(["--current-pin-file", current.to_str().unwrap()]);
        courier(cloud, &laptop, &args)
    };
    let (ok, _, err) = with_current(&wrong_file);
    assert!(!ok);
    assert!(err.contains("not the current registration PIN"), "{err}");
    let (ok, out, err) = with_current(&pin_file);
    assert!(ok, "{err}");
    assert!(out.contains("Two-step verification is on"), "{out}");
    let (ok, out, err) = courier(
        cloud,
        &new_phone,
        &["pin", "check", "--pin-file", new_pin_file.to_str().unwrap()],
    );
    assert!(ok && out.contains("Correct"), "{out}{err}");

    // The primary removes it without the current PIN; then the companion cannot set one.
    let (ok, out, err) = courier(cloud, &new_phone, &["pin", "remove"]);
    assert!(ok, "{err}");
    assert!(out.contains("Two-step verification is off"), "{out}");
    let (ok, _, err) = with_current(&pin_file);
    assert!(!ok);
    assert!(err.contains("only the primary device"), "{err}");
}
