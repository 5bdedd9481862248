//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::PathBuf;

/// `target/<profile>/examples`, where `cargo test` puts `echo_fn` and `stream_fn`; fails clearly
/// when one is missing or older than its source (`cargo test --test X` does not rebuild examples).
pub fn echo_fn_dir() -> PathBuf {
    examples_dir(&["echo_fn"])
}

/// Like [`echo_fn_dir`], checking the given examples.
pub fn examples_dir(names: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    for name in names {
        let bin = dir.join(name);
        let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(format!("{name}.rs"));
        let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let fresh = match (modified(&bin), modified(&source)) {
            (Some(b), Some(s)) => b >= s,
            _ => false,
        };
        assert!(
            fresh,
            "{} is missing or stale: run `cargo test -p courier-local` (which builds examples) or \
             `cargo build -p courier-local --examples`",
            bin.display()
        );
    }
    dir
}

/// The workspace root (where `infra/install` puts the emulators).
pub fn workspace_root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// DynamoDB Local's folder and `moto_server`, found from the workspace root as `./dev up` finds
/// them (`COURIER_DYNAMODB_LOCAL_DIR` and `COURIER_MOTO_SERVER` still win), to pass to the
/// local cloud explicitly. `None` where the environment points at a running service instead
/// (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3` with `_SNS`). Panics with what to do when
/// one is missing: a missing emulator is a broken set-up, not a test that passes.
pub fn installed_emulators() -> (Option<PathBuf>, Option<PathBuf>) {
    let root = workspace_root();
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    let endpoint =
        |service: &str| set(&format!("AWS_ENDPOINT_URL_{service}")) || set("AWS_ENDPOINT_URL");
    let dynamodb = (!endpoint("DYNAMODB")).then(|| {
        courier_local::emulators::dynamodb_local_dir(&root).unwrap_or_else(|e| {
            panic!(
                "DynamoDB Local is missing ({e:#}): run infra/install in {}",
                root.display()
            )
        })
    });
    let moto = (!(endpoint("S3") && endpoint("SNS"))).then(|| {
        let bin = courier_local::emulators::moto_server_path(&root.join(".courier-local"))
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server is missing ({e:#}): run infra/install in {}",
                    root.display()
                )
            });
        assert!(
            bin.is_file(),
            "moto_server {} does not exist: run infra/install in {} (or fix COURIER_MOTO_SERVER)",
            bin.display(),
            root.display()
        );
        bin
    });
    (dynamodb, moto)
}
