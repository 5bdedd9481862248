//! What would have reached phones: SMS and mobile-push publishes, read back from the SNS emulator.
//!
//! - moto 5 keeps them in its state dump `GET /moto-api/data.json`: SMS under `sns.SMS[]`
//!   (`phone_number`, `message`, `message_id`) and pushes under `sns.PlatformEndpoint[].messages`
//!   (a map of message id to message). moto records no `MessageStructure`, so the outbox says
//!   `"json"` for a message that is a JSON object with a `default` key (what SNS requires of
//!   `MessageStructure=json`).
//! - LocalStack (LocalStack mode) serves them at `GET /_aws/sns/sms-messages` (`sms_messages`: a
//!   map of phone number to `[{PhoneNumber, Message, MessageId, MessageStructure, ...}]`) and
//!   `GET /_aws/sns/platform-endpoint-messages` (`platform_endpoint_messages`: a map of endpoint
//!   ARN to `[{TargetArn, Message, MessageId, MessageStructure, ...}]`), per account and region.
//!   For `MessageStructure=json` it keeps only the part for the endpoint's platform (`APNS`,
//!   `GCM`, ..., else `default`), which is what the device would get.
//!
//! Neither records a time, so the outbox adds the time it first saw a message, and lists messages
//! in that order (those first seen by the same read in the emulator's order).
//!
//! `reset` does not wipe the emulator (moto would lose the bucket and platform applications); it
//! records the messages seen so far as cleared, so later reads show only newer ones.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde_json::{Value as J, json};

/// Where the SNS publishes are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No readable emulator (S3/SNS point elsewhere): the outbox is unavailable.
    None,
    /// moto server at this URL.
    Moto(String),
    /// LocalStack at this URL; its messages are kept per account and region.
    LocalStack {
        /// Base URL.
        url: String,
        /// The region the functions publish in.
        region: String,
    },
}

/// Reads the outbox from the SNS emulator.
#[derive(Debug)]
pub struct Outbox {
    source: Source,
    client: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cleared: HashSet<String>,
    first_seen: HashMap<String, String>,
}

/// One publish as the emulator keeps it.
struct Published {
    id: String,
    /// Phone number (SMS) or endpoint ARN (push).
    to: String,
    message: String,
    /// `Some("json")` for `MessageStructure=json`, when the emulator says so.
    structure: Option<String>,
}

struct Snapshot {
    sms: Vec<(String, J)>,
    push: Vec<(String, J)>,
}

impl Outbox {
    /// An outbox over `source`.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            client: reqwest::Client::new(),
            state: Mutex::default(),
        }
    }

    async fn get_json(&self, url: &str, what: &str) -> Result<J> {
        self.client
            .get(url)
            .send()
            .await
            .with_context(|| format!("reading {what}"))?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("{what} is not JSON"))
    }

    /// SMS and pushes, in the emulator's order.
    async fn read(&self) -> Result<(Vec<Published>, Vec<Published>)> {
        match &self.source {
            Source::None => {
                bail!(
                    "the outbox needs moto server or LocalStack (S3/SNS point at another endpoint)"
                )
            }
            Source::Moto(url) => {
                let data = self
                    .get_json(&format!("{url}/moto-api/data.json"), "moto's state")
                    .await?;
                Ok(from_moto(data.get("sns").unwrap_or(&J::Null)))
            }
            Source::LocalStack { url, region } => {
                let query = format!(
                    "accountId={}&region={region}",
                    crate::template::LOCAL_ACCOUNT_ID
                );
                let sms = self
                    .get_json(
                        &format!("{url}/_aws/sns/sms-messages?{query}"),
                        "LocalStack's SMS messages",
                    )
                    .await?;
                let push = self
                    .get_json(
                        &format!("{url}/_aws/sns/platform-endpoint-messages?{query}"),
                        "LocalStack's platform endpoint messages",
                    )
                    .await?;
                Ok(from_localstack(&sms, &push))
            }
        }
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let (sms_read, push_read) = self.read().await?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut state = self.state.lock().unwrap();
        let mut seen = HashSet::new();
        let mut stamp = |id: &str| -> String {
            state
                .first_seen
                .entry(id.to_string())
                .or_insert_with(|| now.clone())
                .clone()
        };

        let mut sms = Vec::new();
        for m in sms_read {
            if !seen.insert(m.id.clone()) {
                continue;
            }
            let entry = json!({
                "phoneNumber": m.to,
                "message": m.message,
                "messageId": m.id,
                "timestamp": stamp(&m.id),
            });
            sms.push((m.id, entry));
        }

        let mut push = Vec::new();
        for m in push_read {
            if !seen.insert(m.id.clone()) {
                continue;
            }
            let structured = match &m.structure {
                Some(s) => s == "json",
                None => serde_json::from_str::<J>(&m.message)
                    .ok()
                    .is_some_and(|v| v.get("default").is_some_and(J::is_string)),
            };
            let mut entry = json!({
                "endpointArn": m.to,
                "message": m.message,
                "messageId": m.id,
                "timestamp": stamp(&m.id),
            });
            if structured {
                entry["messageStructure"] = J::String("json".into());
            }
            push.push((m.id, entry));
        }
        let cleared = &state.cleared;
        sms.retain(|(id, _)| !cleared.contains(id));
        push.retain(|(id, _)| !cleared.contains(id));
        // Oldest first. The emulators group messages by phone number or endpoint; a stable sort
        // on the time first seen keeps their order within one read. (RFC 3339 in UTC with fixed
        // millisecond digits sorts as text.)
        let time = |e: &J| e["timestamp"].as_str().unwrap_or_default().to_owned();
        sms.sort_by_key(|(_, e)| time(e));
        push.sort_by_key(|(_, e)| time(e));
        Ok(Snapshot { sms, push })
    }

    /// Every SMS published since the last reset: `{phoneNumber, message, messageId, timestamp}`.
    pub async fn sms(&self) -> Result<Vec<J>> {
        Ok(self
            .snapshot()
            .await?
            .sms
            .into_iter()
            .map(|x| x.1)
            .collect())
    }

    /// Every publish to a platform endpoint since the last reset.
    pub async fn push(&self) -> Result<Vec<J>> {
        Ok(self
            .snapshot()
            .await?
            .push
            .into_iter()
            .map(|x| x.1)
            .collect())
    }

    /// Hides everything published so far.
    pub async fn reset(&self) -> Result<()> {
        let snap = self.snapshot().await?;
        let mut state = self.state.lock().unwrap();
        for (id, _) in snap.sms.into_iter().chain(snap.push) {
            state.cleared.insert(id);
        }
        Ok(())
    }
}

fn text(v: &J, key: &str) -> String {
    v.get(key)
        .and_then(J::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// moto's `sns` state.
fn from_moto(sns: &J) -> (Vec<Published>, Vec<Published>) {
    let sms = sns
        .get("SMS")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
        .map(|m| Published {
            id: text(m, "message_id"),
            to: text(m, "phone_number"),
            message: text(m, "message"),
            structure: None,
        })
        .collect();
    let mut push = Vec::new();
    for ep in sns
        .get("PlatformEndpoint")
        .and_then(J::as_array)
        .into_iter()
        .flatten()
    {
        let arn = text(ep, "arn");
        for (id, message) in ep
            .get("messages")
            .and_then(J::as_object)
            .into_iter()
            .flatten()
        {
            push.push(Published {
                id: id.clone(),
                to: arn.clone(),
                message: message.as_str().unwrap_or_default().to_owned(),
                structure: None,
            });
        }
    }
    (sms, push)
}

/// LocalStack's `/_aws/sns/sms-messages` and `/_aws/sns/platform-endpoint-messages` answers.
fn from_localstack(sms: &J, push: &J) -> (Vec<Published>, Vec<Published>) {
    let read = |doc: &J, key: &str, to_key: &str| -> Vec<Published> {
        doc.get(key)
            .and_then(J::as_object)
            .into_iter()
            .flatten()
            .flat_map(|(to, messages)| {
                messages
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |m| Published {
                        id: text(m, "MessageId"),
                        to: m.get(to_key).and_then(J::as_str).unwrap_or(to).to_owned(),
                        message: text(m, "Message"),
                        structure: m
                            .get("MessageStructure")
                            .and_then(J::as_str)
                            .map(str::to_owned)
                            .or_else(|| Some(String::new())),
                    })
            })
            .collect()
    };
    (
        read(sms, "sms_messages", "PhoneNumber"),
        read(push, "platform_endpoint_messages", "TargetArn"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_localstacks_documents() {
        let sms = json!({"sms_messages": {"+14155550100": [
            {"PhoneNumber": "+14155550100", "MessageId": "m1", "Message": "code 1",
             "MessageStructure": null}
        ]}, "region": "us-east-1"});
        let push = json!({"platform_endpoint_messages": {"arn:ep": [
            {"TargetArn": "arn:ep", "MessageId": "m2", "Message": "{\"aps\":{}}",
             "MessageStructure": "json"},
            {"TargetArn": "arn:ep", "MessageId": "m3", "Message": "{\"default\":\"x\"}",
             "MessageStructure": null}
        ]}, "region": "us-east-1"});
        let (sms, push) = from_localstack(&sms, &push);
        assert_eq!(sms.len(), 1);
        assert_eq!(
            (sms[0].id.as_str(), sms[0].to.as_str()),
            ("m1", "+14155550100")
        );
        assert_eq!(sms[0].message, "code 1");
        assert_eq!(push.len(), 2);
        assert_eq!(push[0].to, "arn:ep");
        assert_eq!(push[0].structure.as_deref(), Some("json"));
        // LocalStack says what the structure was: a plain message that looks like JSON is not
        // taken for a structured one.
        assert_eq!(push[1].structure.as_deref(), Some(""));
    }

    #[test]
    fn reads_motos_state() {
        let sns = json!({
            "SMS": [{"phone_number": "+14155550100", "message": "code 2", "message_id": "a"}],
            "PlatformEndpoint": [{"arn": "arn:ep", "messages": {"b": "{\"default\":\"x\"}"}}]
        });
        let (sms, push) = from_moto(&sns);
        assert_eq!(
            (sms[0].id.as_str(), sms[0].message.as_str()),
            ("a", "code 2")
        );
        assert_eq!((push[0].id.as_str(), push[0].to.as_str()), ("b", "arn:ep"));
        assert_eq!(push[0].structure, None);
    }
}
