//! Each function binary's wiring (functions/<name>/src/main.rs) builds stores over exactly the
//! tables template.yaml tells that function of (its `*_TABLE` variables). `infra/check-template`
//! ties those variables to the function's IAM policy, so together: what a function's code
//! touches is what AWS lets it touch. A table missing from the template fails on AWS only (the
//! local cloud checks no IAM); one named but never built is a permission nothing uses.
//!
//! Each binary runs as the local cloud runs it, with the environment the template resolves,
//! plus `COURIER_DESCRIBE=tables`: it builds its handler, prints the table settings its stores
//! read, and exits (crates/courier-lambda/src/serve.rs). Needs the binaries built
//! (`cargo build --workspace --bins`, as `./dev test` does).

use courier_local::template::{Template, TemplateOptions};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}

fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("debug")
}

/// The template's functions served by Courier's own binaries (the SNS platform-application
/// provider is a CloudFormation custom resource with no stores).
#[test]
fn every_function_builds_stores_over_exactly_the_tables_the_template_tells_it_of() {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    let app = Template::parse(&text, TemplateOptions::default())
        .unwrap()
        .application()
        .unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (id, f) in &app.functions {
        if f.binary == "platform-apps" {
            continue;
        }
        let bin = bin_dir().join(&f.binary);
        assert!(
            bin.exists(),
            "{} is not built: run `cargo build --workspace --bins` first",
            bin.display()
        );
        let out = Command::new(&bin)
            .env_clear()
            .envs(&f.environment)
            .env("COURIER_DESCRIBE", "tables")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "{id} ({}): its wiring failed with the template's environment: {}{}",
                f.binary,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let described: serde_json::Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .rfind(|l| l.starts_with(b"{\"operation\""))
                .unwrap_or_else(|| panic!("{id}: no description in {out:?}")),
        )
        .unwrap();
        let built: BTreeSet<String> = described["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let told: BTreeSet<String> = f
            .environment
            .keys()
            .filter(|k| k.ends_with("_TABLE"))
            .cloned()
            .collect();
        for t in built.difference(&told) {
            problems.push(format!(
                "{id}: its wiring builds a store over {t}, which the template does not give it"
            ));
        }
        for t in told.difference(&built) {
            problems.push(format!(
                "{id}: the template gives it {t}, which its wiring never uses"
            ));
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} functions checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
