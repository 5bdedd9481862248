//! The cost side: each function prints one CloudWatch Embedded Metric Format line per invocation
//! (`courier_lambda::telemetry::metered`), and the local cloud appends every function's stdout
//! to `<state-dir>/logs/<FunctionLogicalId>.log`. Mark where the logs end before the load,
//! read what was appended after it, and add the lines up by `Operation`.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the invocations of one operation cost, added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// Invocations (EMF lines).
    pub invocations: u64,
    /// DynamoDB calls.
    pub dynamodb_calls: f64,
    /// DynamoDB read capacity units.
    pub read_units: f64,
    /// DynamoDB write capacity units.
    pub write_units: f64,
    /// API Gateway management API calls.
    pub management_api_calls: f64,
    /// SNS publishes.
    pub sns_publishes: f64,
}

impl Cost {
    /// Adds another cost to this one.
    pub fn add(&mut self, o: &Cost) {
        self.invocations += o.invocations;
        self.dynamodb_calls += o.dynamodb_calls;
        self.read_units += o.read_units;
        self.write_units += o.write_units;
        self.management_api_calls += o.management_api_calls;
        self.sns_publishes += o.sns_publishes;
    }

    /// This cost divided by `n` (per message); invocations stay a count.
    pub fn per(&self, n: u64) -> Cost {
        let d = n.max(1) as f64;
        Cost {
            invocations: self.invocations,
            dynamodb_calls: self.dynamodb_calls / d,
            read_units: self.read_units / d,
            write_units: self.write_units / d,
            management_api_calls: self.management_api_calls / d,
            sns_publishes: self.sns_publishes / d,
        }
    }
}

/// One EMF line's operation and values, or None for any other line.
pub fn parse_line(line: &str) -> Option<(String, Cost)> {
    if !line.contains("\"_aws\"") {
        return None;
    }
    let v: Value = serde_json::from_str(line).ok()?;
    v.get("_aws")?.get("CloudWatchMetrics")?;
    let op = v["Operation"].as_str()?.to_owned();
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    Some((
        op,
        Cost {
            invocations: 1,
            dynamodb_calls: n("DynamoDBCalls"),
            read_units: n("DynamoDBReadUnits"),
            write_units: n("DynamoDBWriteUnits"),
            management_api_calls: n("ManagementApiCalls"),
            sns_publishes: n("SnsPublishes"),
        },
    ))
}

/// Adds up the EMF lines of `text` by operation into `into`.
pub fn add_lines(text: &str, into: &mut BTreeMap<String, Cost>) {
    for (op, cost) in text.lines().filter_map(parse_line) {
        into.entry(op).or_default().add(&cost);
    }
}

/// How long each function's log file is now.
#[derive(Debug, Default, Clone)]
pub struct Marks {
    dir: PathBuf,
    lengths: HashMap<PathBuf, u64>,
}

fn log_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "log") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Marks the end of every log file in `dir`.
pub fn mark(dir: &Path) -> Result<Marks> {
    let mut lengths = HashMap::new();
    for f in log_files(dir)? {
        lengths.insert(f.clone(), std::fs::metadata(&f)?.len());
    }
    Ok(Marks {
        dir: dir.to_path_buf(),
        lengths,
    })
}

/// The cost, by operation, of every EMF line appended since `marks` (whole lines only).
pub fn since(marks: &Marks) -> Result<BTreeMap<String, Cost>> {
    let mut out = BTreeMap::new();
    for f in log_files(&marks.dir)? {
        let from = marks.lengths.get(&f).copied().unwrap_or(0);
        let mut file = std::fs::File::open(&f).with_context(|| format!("{}", f.display()))?;
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        add_lines(&String::from_utf8_lossy(&bytes), &mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"Courier","Dimensions":[["Operation"]],"Metrics":[{"Name":"DynamoDBCalls","Unit":"Count"}]}]},"Operation":"sendMessage","DynamoDBCalls":3,"DynamoDBReadUnits":2.0,"DynamoDBWriteUnits":4.0,"ManagementApiCalls":0,"SnsPublishes":0}"#;

    #[test]
    fn adds_up_emf_lines_by_operation_and_skips_the_rest() {
        let fan = LINE
            .replace("sendMessage", "fanOut")
            .replace("\"ManagementApiCalls\":0", "\"ManagementApiCalls\":1");
        let text = format!(
            "{LINE}\n{{\"level\":\"INFO\",\"fields\":{{\"message\":\"hi\"}}}}\nnot json\n{LINE}\n{fan}\n"
        );
        let mut by_op = BTreeMap::new();
        add_lines(&text, &mut by_op);
        assert_eq!(by_op.len(), 2);
        let send = by_op["sendMessage"];
        assert_eq!(send.invocations, 2);
        assert_eq!(send.dynamodb_calls, 6.0);
        assert_eq!(send.read_units, 4.0);
        assert_eq!(send.write_units, 8.0);
        assert_eq!(by_op["fanOut"].management_api_calls, 1.0);
        let per = send.per(2);
        assert_eq!((per.dynamodb_calls, per.write_units), (3.0, 4.0));
    }

    #[test]
    fn reads_only_what_was_appended_after_the_mark() {
        let dir = std::env::temp_dir().join(format!("courier-bench-emf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let before = dir.join("SendMessageFunction.log");
        std::fs::write(&before, format!("{LINE}\n")).unwrap();
        let marks = mark(&dir).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&before)
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{LINE}\n").as_bytes()).unwrap();
        std::fs::write(
            dir.join("FanOutFunction.log"),
            format!("{}\n", LINE.replace("sendMessage", "fanOut")),
        )
        .unwrap();
        let by_op = since(&marks).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(by_op["sendMessage"].invocations, 1);
        assert_eq!(by_op["fanOut"].invocations, 1);
    }
}
