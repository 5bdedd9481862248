#![no_main]
//! Any text as template.yaml: read or refused, and what is read gives its tables and functions
//! (or an error) without panicking.
#[allow(dead_code, clippy::all)]
#[path = "../../crates/courier-local/src/template/mod.rs"]
mod template;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = template::Template::parse(text, template::TemplateOptions::default()) {
        let _ = t.infrastructure();
        let _ = t.application();
    }
});
