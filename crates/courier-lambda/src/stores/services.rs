//! The stores and services beyond the tables: the bucket, the WebSocket management API, SNS
//! (push and SMS), delivery, and an account's data for its deletion.

use super::{Stores, leak};
use courier_aws::config::{self, required};
use courier_aws::dynamo::DynamoConnections;
use courier_aws::gateway::ManagementApi;
use courier_aws::push::SnsPush;
use courier_aws::s3::S3Objects;
use courier_aws::sms::SnsSms;
use courier_core::usecases::deliver::Deliverer;
use courier_core::usecases::{delete_account, media};
use lambda_runtime::Error;

impl Stores {
    /// The media and backups bucket (`MEDIA_BUCKET`).
    pub fn objects(&self) -> Result<&'static S3Objects, Error> {
        Ok(leak(S3Objects::new(
            courier_aws::s3::client(&self.sdk),
            required("MEDIA_BUCKET")?,
        )))
    }

    /// What checks and records attachments (`MEDIA_TABLE`, `MEDIA_BUCKET`).
    pub fn attach(&self) -> Result<media::AttachDeps<'static>, Error> {
        Ok(media::AttachDeps {
            media: self.media()?,
            objects: self.objects()?,
        })
    }

    /// The WebSocket API's management endpoint, to post to connections.
    pub fn gateway(&self) -> Result<&'static ManagementApi, Error> {
        Ok(leak(ManagementApi::new(config::management(&self.sdk)?)))
    }

    /// Pushes through SNS to the platform applications configured.
    pub fn push(&self) -> &'static SnsPush {
        leak(SnsPush::new(
            config::sns(&self.sdk),
            std::env::var("APNS_PLATFORM_APP_ARN").ok(),
            std::env::var("FCM_PLATFORM_APP_ARN").ok(),
        ))
    }

    /// Text messages through SNS.
    pub fn sms(&self) -> &'static SnsSms {
        leak(SnsSms::new(
            config::sns(&self.sdk),
            std::env::var("SMS_SENDER_ID").ok(),
        ))
    }

    /// Delivery to live connections (`CONNECTIONS_TABLE`, the management API) and, with
    /// `push_offline`, to offline devices through SNS.
    pub fn deliverer(&self, push_offline: bool) -> Result<Deliverer<'static>, Error> {
        let connections = self.connections()?;
        Ok(Deliverer {
            presence: connections,
            connections,
            gateway: self.gateway()?,
            push: push_offline.then(|| self.push() as _),
        })
    }

    /// The stores of an account's data beyond its devices (`deleteAccount`, and a registration
    /// PIN reset in `validateAccount`).
    pub fn account_data(
        &self,
        connections: &'static DynamoConnections,
    ) -> Result<delete_account::AccountData<'static>, Error> {
        let sessions = self.sessions()?;
        Ok(delete_account::AccountData {
            sessions,
            groups: sessions,
            messages: self.messages()?,
            presence: connections,
            settings: self.settings()?,
            statuses: self.statuses()?,
            backups: self.backups()?,
            objects: self.objects()?,
        })
    }
}
