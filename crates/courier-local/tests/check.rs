//! `courier-local --check`: what the template resolves to, printed without starting anything.

use std::process::Command;

fn check(extra: &[&str]) -> String {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/streams.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_courier-local"))
        .args(["--check", "--template", fixture])
        .args(extra)
        .output()
        .expect("courier-local runs");
    assert!(
        out.status.success(),
        "--check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// One line per stream mapping, each saying how often an idle shard is read: AWS's rate (4 reads
/// a second) unless an experiment asks for another.
#[test]
fn every_stream_mapping_polls_at_aws_rate_by_default() {
    let text = check(&[]);
    let mappings: Vec<&str> = text.lines().filter(|l| l.starts_with("stream ")).collect();
    // streams.yaml has four mappings: three SAM events and an AWS::Lambda::EventSourceMapping.
    assert_eq!(mappings.len(), 4, "{text}");
    for line in &mappings {
        assert!(line.contains("poll every 250 ms"), "{line}");
    }
    let fan_out = mappings
        .iter()
        .find(|l| l.contains("-> FanOutFunction"))
        .expect("the fan-out's mapping");
    assert!(fan_out.contains("batch 100"), "{fan_out}");
    assert!(fan_out.contains("window 1s"), "{fan_out}");
    assert!(
        text.contains("on failure -> arn:aws:sqs:us-east-1:000000000000:courier-DeadEndFailures"),
        "{text}"
    );

    let loose = check(&["--stream-poll-ms", "10"]);
    let lines: Vec<&str> = loose.lines().filter(|l| l.starts_with("stream ")).collect();
    assert_eq!(lines.len(), 4, "{loose}");
    assert!(
        lines.iter().all(|l| l.contains("poll every 10 ms")),
        "{loose}"
    );
}
