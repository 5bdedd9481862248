//! DynamoDB's own ways of surprising code that DynamoDB Local never shows, for the fault switch:
//! global secondary indexes that lag behind their table, and transactions cancelled because
//! another one touched the same item (`TransactionConflict`). With `--dynamodb-faults` the
//! functions reach DynamoDB through a proxy of the local cloud (the fault proxy, their
//! `AWS_ENDPOINT_URL_DYNAMODB`), which asks this module what to do with each call; without it
//! they reach DynamoDB Local directly and arming either switch is refused.
//!
//! **GSI lag** (`POST /_local/faults/gsi-lag {"lagMs": N}`): on AWS a GSI is updated
//! asynchronously, so a `Query` or `Scan` on an index can miss a write made just before (usually
//! well under a second; longer under load). DynamoDB Local updates its indexes with the write. So
//! while the switch is armed, every table with a GSI has a replica (`<table>-gsi-lag`, same key
//! schema and indexes, filled with a copy of the table when armed) that applies each write `N` ms
//! after it happened: the proxy lets the write through to the table at once, reads the item's new
//! state (a consistent `GetItem`) right after, and puts (or deletes) that state in the replica `N`
//! ms later. Index reads (`Query`/`Scan` with `IndexName`) are answered from the replica's index,
//! so they see the table as it was about `N` ms ago, with the index's own projection; everything
//! else (the table itself, consistent or not) is answered by the table. Disarming sends index
//! reads to the tables again.
//!
//! **Transaction conflicts** (`POST /_local/faults/transaction-conflicts {"count": N, "rate": R,
//! "table": T}`): the next `N` `TransactWriteItems` calls (then a share `R` of them), only those
//! with an item in table `T` when given, answer 400 `TransactionCanceledException` with a
//! `TransactionConflict` reason for that item and `None` for the others, as DynamoDB answers when
//! another transaction holds the item. Nothing is written. The AWS SDKs do not retry it by
//! themselves.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, Projection,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as J, json};

/// The replica of `table` that index reads are answered from while the lag is armed.
pub fn replica_name(table: &str) -> String {
    format!("{table}-gsi-lag")
}

/// The fault switch's DynamoDB part.
#[derive(Default)]
pub struct DynamoFaults {
    /// DynamoDB itself (not the proxy): makes the replicas.
    client: Mutex<Option<aws_sdk_dynamodb::Client>>,
    /// This cloud's tables (the template's).
    tables: Mutex<Vec<String>>,
    lag: Mutex<Option<Lag>>,
    conflicts: Mutex<Conflicts>,
    /// Replica writes that failed (logged; counted so a test can see none did).
    replica_failures: std::sync::atomic::AtomicU64,
    /// Index reads answered from a replica.
    lagged_reads: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
struct Lag {
    lag: Duration,
    /// Table name to its key attribute names, for the tables that have a GSI.
    tables: HashMap<String, Vec<String>>,
}

#[derive(Default)]
struct Conflicts {
    table: Option<String>,
    remaining: u64,
    rate: f64,
    injected: u64,
}

/// What the proxy does with one DynamoDB call.
pub enum Plan {
    /// Forward it unchanged.
    Forward,
    /// Answer this instead.
    Answer(Response),
    /// Forward this body instead (an index read sent to a replica), then put `replica` back to
    /// `table` in the answer.
    IndexRead {
        body: Vec<u8>,
        replica: String,
        table: String,
    },
    /// Forward it, then (if it succeeded) replicate these items `lag` later.
    Write {
        items: Vec<(String, J)>,
        lag: Duration,
    },
}

impl DynamoFaults {
    /// Where DynamoDB is, and this cloud's table names: the functions' calls go through the
    /// proxy (`--dynamodb-faults`).
    pub fn attach(&self, client: aws_sdk_dynamodb::Client, tables: Vec<String>) {
        *self.client.lock().unwrap() = Some(client);
        *self.tables.lock().unwrap() = tables;
    }

    /// Whether the functions' DynamoDB calls go through the proxy (`--dynamodb-faults`).
    pub fn enabled(&self) -> bool {
        self.client.lock().unwrap().is_some()
    }

    /// Arms the GSI lag (`0` disarms): makes a fresh replica of every table with a GSI.
    pub async fn set_gsi_lag(&self, lag_ms: u64) -> Result<(), String> {
        if lag_ms == 0 {
            *self.lag.lock().unwrap() = None;
            return Ok(());
        }
        let client = self.client.lock().unwrap().clone().ok_or(
            "the functions do not reach DynamoDB through the fault switch: start the local \
             cloud with --dynamodb-faults",
        )?;
        let names = self.tables.lock().unwrap().clone();
        let mut tables = HashMap::new();
        for name in names {
            let desc = client
                .describe_table()
                .table_name(&name)
                .send()
                .await
                .map_err(|e| format!("DescribeTable {name}: {e}"))?;
            let Some(t) = desc.table() else { continue };
            if t.global_secondary_indexes().is_empty() {
                continue;
            }
            let key: Vec<String> = t
                .key_schema()
                .iter()
                .map(|k| k.attribute_name().to_string())
                .collect();
            make_replica(&client, &name, t).await?;
            tables.insert(name, key);
        }
        tracing::info!(
            "fault injection: GSI reads of {} lag {lag_ms} ms",
            tables.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        *self.lag.lock().unwrap() = Some(Lag {
            lag: Duration::from_millis(lag_ms),
            tables,
        });
        Ok(())
    }

    /// Arms transaction conflicts (replacing what was armed; the count of injected ones stays).
    pub fn set_transaction_conflicts(
        &self,
        count: u64,
        rate: f64,
        table: Option<String>,
    ) -> Result<(), String> {
        if self.client.lock().unwrap().is_none() && (count > 0 || rate > 0.0) {
            return Err(
                "the functions do not reach DynamoDB through the fault switch: start \
                        the local cloud with --dynamodb-faults"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("rate {rate} is not within 0..=1"));
        }
        let mut c = self.conflicts.lock().unwrap();
        c.remaining = count;
        c.rate = rate;
        c.table = table;
        Ok(())
    }

    /// Disarms both.
    pub fn clear(&self) {
        *self.lag.lock().unwrap() = None;
        let mut c = self.conflicts.lock().unwrap();
        c.remaining = 0;
        c.rate = 0.0;
    }

    /// For `GET /_local/faults`.
    pub fn describe(&self) -> (J, J) {
        use std::sync::atomic::Ordering::Relaxed;
        let lag = self.lag.lock().unwrap().clone();
        let c = self.conflicts.lock().unwrap();
        (
            json!({
                "lagMs": lag.as_ref().map_or(0, |l| l.lag.as_millis() as u64),
                "tables": lag.map(|l| {
                    let mut t: Vec<String> = l.tables.into_keys().collect();
                    t.sort();
                    t
                }).unwrap_or_default(),
                "laggedReads": self.lagged_reads.load(Relaxed),
                "replicaFailures": self.replica_failures.load(Relaxed),
            }),
            json!({
                "table": c.table,
                "remaining": c.remaining,
                "rate": c.rate,
                "injected": c.injected,
            }),
        )
    }

    /// What to do with a call whose `X-Amz-Target` operation is `op`.
    pub fn plan(&self, op: &str, body: &[u8]) -> Plan {
        let conflicts_armed = {
            let c = self.conflicts.lock().unwrap();
            c.remaining > 0 || c.rate > 0.0
        };
        let lag = self.lag.lock().unwrap().clone();
        if !conflicts_armed && lag.is_none() {
            return Plan::Forward;
        }
        let Ok(request) = serde_json::from_slice::<J>(body) else {
            return Plan::Forward;
        };
        if op == "TransactWriteItems"
            && conflicts_armed
            && let Some(answer) = self.conflict(&request)
        {
            return Plan::Answer(answer);
        }
        let Some(lag) = lag else {
            return Plan::Forward;
        };
        match op {
            "Query" | "Scan" if request.get("IndexName").is_some() => {
                let table = request["TableName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if !lag.tables.contains_key(&table) {
                    return Plan::Forward;
                }
                let replica = replica_name(&table);
                let mut rewritten = request.clone();
                rewritten["TableName"] = J::String(replica.clone());
                self.lagged_reads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Plan::IndexRead {
                    body: rewritten.to_string().into_bytes(),
                    replica,
                    table,
                }
            }
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
                let items = written_keys(op, &request, &lag.tables);
                if items.is_empty() {
                    Plan::Forward
                } else {
                    Plan::Write {
                        items,
                        lag: lag.lag,
                    }
                }
            }
            _ => Plan::Forward,
        }
    }

    /// A `TransactionCanceledException` for this transaction, if the switch fails it.
    fn conflict(&self, request: &J) -> Option<Response> {
        let items = request["TransactItems"].as_array()?;
        let mut c = self.conflicts.lock().unwrap();
        let table_of = |item: &J| -> Option<String> {
            ["Put", "Update", "Delete", "ConditionCheck"]
                .iter()
                .find_map(|k| item.get(*k)?.get("TableName")?.as_str().map(str::to_owned))
        };
        let victim = match &c.table {
            Some(t) => items.iter().position(|i| table_of(i).as_ref() == Some(t))?,
            None => 0,
        };
        if c.remaining > 0 {
            c.remaining -= 1;
        } else if c.rate <= 0.0 || rand::random::<f64>() >= c.rate {
            return None;
        }
        c.injected += 1;
        drop(c);
        tracing::info!("fault injection: TransactWriteItems cancelled by a TransactionConflict");
        let reasons: Vec<J> = (0..items.len())
            .map(|i| {
                if i == victim {
                    json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                } else {
                    json!({"Code": "None"})
                }
            })
            .collect();
        let codes: Vec<&str> = (0..items.len())
            .map(|i| {
                if i == victim {
                    "TransactionConflict"
                } else {
                    "None"
                }
            })
            .collect();
        let body = json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
            "CancellationReasons": reasons,
        });
        let mut r = (StatusCode::BAD_REQUEST, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            r.headers_mut().insert("x-amzn-requestid", v);
        }
        Some(r)
    }

    /// After a write succeeded: reads each item's state now and applies it to the replica
    /// `lag` later (in the background). `headers` are the write's (DynamoDB Local keeps one
    /// database per access key and region, so the replica calls carry the same credentials).
    pub fn replicate(
        self: &std::sync::Arc<Self>,
        http: reqwest::Client,
        upstream: String,
        headers: HeaderMap,
        items: Vec<(String, J)>,
        lag: Duration,
    ) {
        let me = self.clone();
        let due = tokio::time::Instant::now() + lag;
        tokio::spawn(async move {
            let call = |op: &'static str, body: J| {
                let mut req = http
                    .post(&upstream)
                    .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
                    .header(header::CONTENT_TYPE, "application/x-amz-json-1.0");
                if let Some(auth) = headers.get(header::AUTHORIZATION) {
                    req = req.header(header::AUTHORIZATION, auth);
                }
                async move {
                    let r = req
                        .body(body.to_string())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = r.status();
                    let text = r.text().await.map_err(|e| e.to_string())?;
                    if !status.is_success() {
                        return Err(format!("{op}: {status} {text}"));
                    }
                    serde_json::from_str::<J>(&text).map_err(|e| e.to_string())
                }
            };
            let mut states = Vec::new();
            for (table, key) in items {
                let got = call(
                    "GetItem",
                    json!({"TableName": table, "Key": key, "ConsistentRead": true}),
                )
                .await;
                states.push((table, key, got));
            }
            tokio::time::sleep_until(due).await;
            for (table, key, got) in states {
                let replica = replica_name(&table);
                let result = match got {
                    Ok(v) => match v.get("Item") {
                        Some(item) => call("PutItem", json!({"TableName": replica, "Item": item}))
                            .await
                            .map(drop),
                        None => call("DeleteItem", json!({"TableName": replica, "Key": key}))
                            .await
                            .map(drop),
                    },
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    me.replica_failures
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!("GSI lag: replicating an item of {table} failed: {e}");
                }
            }
        });
    }
}

/// The (table, key) of every item a write touches, for the tables in `tables` (name to key
/// attribute names).
fn written_keys(op: &str, request: &J, tables: &HashMap<String, Vec<String>>) -> Vec<(String, J)> {
    let key_of = |table: &str, item: &J| -> Option<J> {
        let names = tables.get(table)?;
        let mut key = serde_json::Map::new();
        for n in names {
            key.insert(n.clone(), item.get(n)?.clone());
        }
        Some(J::Object(key))
    };
    let mut out = Vec::new();
    let mut add = |table: Option<&str>, key: Option<J>| {
        if let (Some(t), Some(k)) = (table, key)
            && tables.contains_key(t)
        {
            out.push((t.to_string(), k));
        }
    };
    match op {
        "PutItem" => {
            let t = request["TableName"].as_str();
            add(t, t.and_then(|t| key_of(t, &request["Item"])));
        }
        "UpdateItem" | "DeleteItem" => {
            add(request["TableName"].as_str(), request.get("Key").cloned());
        }
        "BatchWriteItem" => {
            if let Some(m) = request["RequestItems"].as_object() {
                for (t, writes) in m {
                    for w in writes.as_array().into_iter().flatten() {
                        if let Some(item) = w.pointer("/PutRequest/Item") {
                            add(Some(t), key_of(t, item));
                        } else if let Some(key) = w.pointer("/DeleteRequest/Key") {
                            add(Some(t), Some(key.clone()));
                        }
                    }
                }
            }
        }
        "TransactWriteItems" => {
            for i in request["TransactItems"].as_array().into_iter().flatten() {
                if let Some(put) = i.get("Put") {
                    let t = put["TableName"].as_str();
                    add(t, t.and_then(|t| key_of(t, &put["Item"])));
                }
                for kind in ["Update", "Delete"] {
                    if let Some(w) = i.get(kind) {
                        add(w["TableName"].as_str(), w.get("Key").cloned());
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Creates (again) `table`'s replica with its key schema and GSIs, and copies the table into it.
async fn make_replica(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    desc: &aws_sdk_dynamodb::types::TableDescription,
) -> Result<(), String> {
    let replica = replica_name(table);
    let _ = client.delete_table().table_name(&replica).send().await;
    let gsis: Vec<GlobalSecondaryIndex> = desc
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let mut projection = Projection::builder();
            if let Some(p) = g.projection() {
                let non_key = p.non_key_attributes();
                projection = projection
                    .set_projection_type(p.projection_type().cloned())
                    .set_non_key_attributes((!non_key.is_empty()).then(|| non_key.to_vec()));
            }
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name().unwrap_or_default())
                .set_key_schema(Some(g.key_schema().to_vec()))
                .projection(projection.build())
                .build()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let key_schema: Vec<KeySchemaElement> = desc.key_schema().to_vec();
    let attributes: Vec<AttributeDefinition> = desc.attribute_definitions().to_vec();
    client
        .create_table()
        .table_name(&replica)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema))
        .set_attribute_definitions(Some(attributes))
        .set_global_secondary_indexes(Some(gsis))
        .send()
        .await
        .map_err(|e| {
            format!(
                "CreateTable {replica}: {}",
                aws_sdk_dynamodb::Error::from(e)
            )
        })?;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| format!("Scan {table}: {}", aws_sdk_dynamodb::Error::from(e)))?;
        for item in page.items() {
            client
                .put_item()
                .table_name(&replica)
                .set_item(Some(item.clone()))
                .send()
                .await
                .map_err(|e| format!("PutItem {replica}: {}", aws_sdk_dynamodb::Error::from(e)))?;
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> HashMap<String, Vec<String>> {
        HashMap::from([("t".to_string(), vec!["pk".to_string(), "sk".to_string()])])
    }

    #[test]
    fn keys_of_every_kind_of_write() {
        let put = json!({"TableName": "t", "Item": {"pk": {"S": "a"}, "sk": {"S": "b"}, "x": {"N": "1"}}});
        assert_eq!(
            written_keys("PutItem", &put, &tables()),
            [("t".to_string(), json!({"pk": {"S": "a"}, "sk": {"S": "b"}}))]
        );
        let other = json!({"TableName": "u", "Key": {"pk": {"S": "a"}}});
        assert!(written_keys("DeleteItem", &other, &tables()).is_empty());
        let tx = json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "1"}, "sk": {"S": "2"}}}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "3"}, "sk": {"S": "4"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "5"}, "sk": {"S": "6"}}}},
            {"Delete": {"TableName": "u", "Key": {"pk": {"S": "7"}}}},
        ]});
        let keys: Vec<J> = written_keys("TransactWriteItems", &tx, &tables())
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert_eq!(
            keys,
            [
                json!({"pk": {"S": "1"}, "sk": {"S": "2"}}),
                json!({"pk": {"S": "5"}, "sk": {"S": "6"}})
            ]
        );
        let batch = json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": {"pk": {"S": "a"}, "sk": {"S": "b"}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "c"}, "sk": {"S": "d"}}}},
        ]}});
        assert_eq!(written_keys("BatchWriteItem", &batch, &tables()).len(), 2);
    }

    #[test]
    fn conflicts_name_the_item_of_the_armed_table() {
        let f = DynamoFaults::default();
        f.attach(
            crate::provision::AwsSettings::from_env().dynamodb("http://127.0.0.1:9"),
            vec![],
        );
        let tx = json!({"TransactItems": [
            {"Put": {"TableName": "a", "Item": {}}},
            {"Update": {"TableName": "b", "Key": {}}},
        ]});
        f.set_transaction_conflicts(1, 0.0, Some("b".into()))
            .unwrap();
        let only_a = json!({"TransactItems": [{"Put": {"TableName": "a", "Item": {}}}]});
        assert!(f.conflict(&only_a).is_none(), "not a transaction on b");
        let r = f.conflict(&tx).expect("the armed one");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(f.conflict(&tx).is_none(), "one only");
        assert_eq!(f.describe().1["injected"], 1);
    }
}
