//! Object storage on S3: presigned uploads and downloads (clients move the ciphertext bytes
//! themselves; no function ever holds them), object sizes, tags for lifecycle rules, deletion.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{Tag, Tagging};
use courier_core::error::PortError;
use courier_core::ports::{ObjectStore, PresignedRequest, ReportStore};
use std::time::Duration;

/// An S3 client. Path-style addressing when `AWS_ENDPOINT_URL_S3` points at an emulator (moto
/// or LocalStack answer on one host, not on per-bucket subdomains); virtual-hosted on AWS.
pub fn client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let path_style = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(path_style)
        .interceptor(crate::trace::TraceHeader)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// One bucket's objects.
#[derive(Clone)]
pub struct S3Objects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Objects {
    /// Objects of `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

fn presigning(ttl: Duration) -> Result<PresigningConfig, PortError> {
    PresigningConfig::expires_in(ttl).map_err(PortError::backend)
}

fn presigned(req: aws_sdk_s3::presigning::PresignedRequest, ttl: Duration) -> PresignedRequest {
    PresignedRequest {
        method: req.method().to_owned(),
        url: req.uri().to_owned(),
        headers: req
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        expires_in_seconds: ttl.as_secs(),
    }
}

/// `k1=v1&k2=v2`, the form of the `x-amz-tagging` header (keys and values are our own constants,
/// letters, digits and dashes only).
fn tagging_header(tags: &[(&str, &str)]) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: u64,
        tags: &[(&str, &str)],
        ttl: Duration,
    ) -> Result<PresignedRequest, PortError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(i64::try_from(size).map_err(PortError::backend)?);
        if !tags.is_empty() {
            req = req.tagging(tagging_header(tags));
        }
        let signed = req
            .presigned(presigning(ttl)?)
            .await
            .map_err(|e| PortError::backend(aws_sdk_s3::Error::from(e)))?;
        Ok(presigned(signed, ttl))
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<PresignedRequest, PortError> {
        let signed = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning(ttl)?)
            .await
            .map_err(|e| PortError::backend(aws_sdk_s3::Error::from(e)))?;
        Ok(presigned(signed, ttl))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, PortError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(PortError::backend(aws_sdk_s3::Error::from(e)))
                }
            }
        }
    }

    async fn set_tags(&self, key: &str, tags: &[(&str, &str)]) -> Result<(), PortError> {
        let tag_set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(PortError::backend)?;
        let tagging = Tagging::builder()
            .set_tag_set(Some(tag_set))
            .build()
            .map_err(PortError::backend)?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| PortError::backend(aws_sdk_s3::Error::from(e)))?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| PortError::backend(aws_sdk_s3::Error::from(e)))?;
        Ok(())
    }
}

#[async_trait]
impl ReportStore for S3Objects {
    async fn file_report(&self, key: &str, json: &[u8]) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(json.to_vec().into())
            .send()
            .await
            .map_err(|e| PortError::backend(aws_sdk_s3::Error::from(e)))?;
        Ok(())
    }
}
