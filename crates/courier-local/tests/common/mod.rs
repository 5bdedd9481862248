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
