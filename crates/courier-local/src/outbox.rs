//! What would have reached phones: SMS and mobile-push publishes, read back from moto.
//!
//! moto 5 keeps them in its state dump `GET /moto-api/data.json`: SMS under `sns.SMS[]`
//! (`phone_number`, `message`, `message_id`) and pushes under `sns.PlatformEndpoint[].messages`
//! (a map of message id to message). moto records no time and no `MessageStructure`, so the
//! outbox adds the time it first saw a message, and says `"json"` for a message that is a JSON
//! object with a `default` key (what SNS requires of `MessageStructure=json`).
//!
//! `reset` does not wipe moto (that would drop the bucket and platform applications); it records
//! the messages seen so far as cleared, so later reads show only newer ones.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use serde_json::{Value as J, json};

/// Reads the outbox from a moto server.
#[derive(Debug)]
pub struct Outbox {
    moto_url: Option<String>,
    client: reqwest::Client,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    cleared: HashSet<String>,
    first_seen: HashMap<String, String>,
}

struct Snapshot {
    sms: Vec<(String, J)>,
    push: Vec<(String, J)>,
}

impl Outbox {
    /// An outbox over the moto server at `moto_url` (`None`: no moto, the outbox is unavailable).
    pub fn new(moto_url: Option<String>) -> Self {
        Self {
            moto_url,
            client: reqwest::Client::new(),
            state: Mutex::default(),
        }
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let Some(url) = &self.moto_url else {
            bail!("the outbox needs moto server (S3/SNS point at another endpoint)");
        };
        let data: J = self
            .client
            .get(format!("{url}/moto-api/data.json"))
            .send()
            .await
            .context("reading moto's state")?
            .error_for_status()?
            .json()
            .await
            .context("moto's state is not JSON")?;
        let sns = data.get("sns").cloned().unwrap_or(J::Null);
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
        for m in sns.get("SMS").and_then(J::as_array).into_iter().flatten() {
            let id = m.get("message_id").and_then(J::as_str).unwrap_or_default();
            if !seen.insert(id.to_string()) {
                continue;
            }
            sms.push((
                id.to_string(),
                json!({
                    "phoneNumber": m.get("phone_number").cloned().unwrap_or(J::Null),
                    "message": m.get("message").cloned().unwrap_or(J::Null),
                    "messageId": id,
                    "timestamp": stamp(id),
                }),
            ));
        }

        let mut push = Vec::new();
        for ep in sns
            .get("PlatformEndpoint")
            .and_then(J::as_array)
            .into_iter()
            .flatten()
        {
            let arn = ep.get("arn").and_then(J::as_str).unwrap_or_default();
            let Some(messages) = ep.get("messages").and_then(J::as_object) else {
                continue;
            };
            for (id, message) in messages {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let text = message.as_str().unwrap_or_default();
                let structured = serde_json::from_str::<J>(text)
                    .ok()
                    .is_some_and(|v| v.get("default").is_some_and(J::is_string));
                let mut entry = json!({
                    "endpointArn": arn,
                    "message": text,
                    "messageId": id,
                    "timestamp": stamp(id),
                });
                if structured {
                    entry["messageStructure"] = J::String("json".into());
                }
                push.push((id.clone(), entry));
            }
        }
        let cleared = &state.cleared;
        sms.retain(|(id, _)| !cleared.contains(id));
        push.retain(|(id, _)| !cleared.contains(id));
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
