//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// `target/<profile>/examples`, where `cargo test` puts `echo_fn`; fails clearly when it is
/// missing or older than its source (`cargo test --test X` does not rebuild examples).
pub fn echo_fn_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join("echo_fn");
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/echo_fn.rs");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&bin), modified(&source)) {
        (Some(b), Some(s)) => b >= s,
        _ => false,
    };
    assert!(
        fresh,
        "{} is missing or stale: run `cargo test -p courier-local` (which builds examples) or \
         `cargo build -p courier-local --example echo_fn`",
        bin.display()
    );
    dir
}
