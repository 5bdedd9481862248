//! Property-based fuzzing (proptest) of the template reader: any text, and the repository's
//! template.yaml with lines deleted, duplicated or changed, is read or refused with an error;
//! reading never panics, and neither does working out the tables and functions of what was read.

use courier_local::template::{Template, TemplateOptions};
use proptest::prelude::*;

fn repo_template() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    std::fs::read_to_string(path).expect("the repository's template.yaml")
}

/// Reads `text` as the local cloud does, and, if that works, derives everything it derives.
fn read_all(text: &str) {
    if let Ok(t) = Template::parse(text, TemplateOptions::default()) {
        let _ = t.infrastructure();
        let _ = t.application();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_a_template_or_an_error(text in ".{0,400}") {
        read_all(&text);
    }

    #[test]
    fn yaml_shaped_text_is_a_template_or_an_error(
        lines in prop::collection::vec(
            ("[ ]{0,8}", "[A-Za-z!:{}$-]{0,12}", "[ A-Za-z0-9:!${}.-]{0,24}"),
            0..40,
        ),
    ) {
        let text: String = lines
            .iter()
            .map(|(indent, key, value)| format!("{indent}{key}: {value}\n"))
            .collect();
        read_all(&format!("Resources:\n{text}"));
    }

    #[test]
    fn the_real_template_with_edits_is_read_or_refused(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, "[ A-Za-z0-9:!${}.-]{0,16}"), 1..6),
    ) {
        let mut lines: Vec<String> = repo_template().lines().map(str::to_owned).collect();
        for (at, op, text) in edits {
            let i = at.index(lines.len());
            match op {
                0 => { lines.remove(i); }
                1 => { let l = lines[i].clone(); lines.insert(i, l); }
                2 => lines[i] = text,
                _ => lines[i].push_str(&text),
            }
        }
        read_all(&lines.join("\n"));
    }
}

#[test]
fn the_real_template_reads_with_every_table_and_function() {
    let t = Template::parse(&repo_template(), TemplateOptions::default()).unwrap();
    let infra = t.infrastructure().unwrap();
    assert_eq!(
        infra.tables.len(),
        infra
            .tables
            .iter()
            .filter(|x| x.name.starts_with("courier-"))
            .count()
    );
    assert!(infra.tables.len() >= 12, "{} tables", infra.tables.len());
    // Locally, only the messages table (read by the fan-out) keeps its stream.
    let streamed: Vec<&str> = infra
        .tables
        .iter()
        .filter(|x| x.has_stream())
        .map(|x| x.logical_id.as_str())
        .collect();
    assert_eq!(streamed, ["MessagesTable"]);
    assert!(t.application().is_ok());
}
