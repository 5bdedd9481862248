//! Object storage with presigned URLs of its own.

use crate::error::PortError;
use crate::ports::*;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Objects in a map, with presigned URLs of the form `memory://<key>`; tests store the bytes a
/// client would have uploaded with [`MemoryObjects::put`].
#[derive(Default)]
pub struct MemoryObjects(Mutex<BTreeMap<String, StoredObject>>);

/// What [`MemoryObjects`] keeps per key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredObject {
    /// The bytes.
    pub body: Vec<u8>,
    /// The content type it was uploaded with.
    pub content_type: String,
    /// Its tags.
    pub tags: Vec<(String, String)>,
}

impl MemoryObjects {
    /// Stores `body` under `key`, as a client's upload would.
    pub fn put(&self, key: &str, body: Vec<u8>, content_type: &str) {
        self.0.lock().unwrap().insert(
            key.to_owned(),
            StoredObject {
                body,
                content_type: content_type.to_owned(),
                tags: Vec::new(),
            },
        );
    }

    /// The object under `key`.
    pub fn get(&self, key: &str) -> Option<StoredObject> {
        self.0.lock().unwrap().get(key).cloned()
    }

    /// Every key stored.
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

fn owned_tags(tags: &[(&str, &str)]) -> Vec<(String, String)> {
    tags.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[async_trait]
impl ObjectStore for MemoryObjects {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        tags: &[(&str, &str)],
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError> {
        let tagging = owned_tags(tags)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("content-length".to_owned(), size.to_string()),
        ];
        if !tagging.is_empty() {
            headers.push(("x-amz-tagging".to_owned(), tagging));
        }
        Ok(PresignedRequest {
            method: "PUT".into(),
            url: format!("memory://{key}"),
            headers,
            expires_in_seconds: ttl.as_secs(),
        })
    }

    async fn presign_get(
        &self,
        key: &str,
        ttl: std::time::Duration,
    ) -> Result<PresignedRequest, PortError> {
        Ok(PresignedRequest {
            method: "GET".into(),
            url: format!("memory://{key}"),
            headers: Vec::new(),
            expires_in_seconds: ttl.as_secs(),
        })
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        Ok(self.0.lock().unwrap().get(key).map(|o| o.body.len() as u64))
    }

    async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        if let Some(o) = self.0.lock().unwrap().get_mut(key) {
            o.tags = owned_tags(tags);
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

#[async_trait]
impl ReportStore for MemoryObjects {
    async fn file_report(&self, key: &str, json: &[u8]) -> Result<(), PortError> {
        self.put(key, json.to_vec(), "application/json");
        Ok(())
    }
}
