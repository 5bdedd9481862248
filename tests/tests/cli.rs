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
