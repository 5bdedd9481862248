//! The env-to-store factories every function binary builds its handler from: each store reads
//! the setting that names its table (or bucket, or endpoint) and nothing else, so a binary's
//! `main` says exactly what its function touches. The SDK clients are made once per process,
//! by the first invocation ([`crate::serve`]).
//!
//! What is built lives as long as the process, so it is leaked to `'static` on purpose: the
//! handlers borrow it for every invocation.
//!
//! Every table setting read is recorded ([`tables_read`]): `COURIER_DESCRIBE=tables` makes a
//! binary build its handler, print those names and exit, which is how the wiring check
//! (`crates/courier-local/tests/wiring.rs`) compares each function's wiring with the
//! environment and the IAM policy template.yaml gives it.
//!
//! Here the tables' stores; in `services` the bucket, the management API, SNS and delivery; in
//! `limits` the rate limits.

use courier_aws::config::{self, required};
use courier_aws::dynamo::{
    DynamoAccounts, DynamoBackups, DynamoConnectTickets, DynamoConnections, DynamoCredentials,
    DynamoDeviceQueues, DynamoKeys, DynamoLinks, DynamoMedia, DynamoMessages, DynamoRegistrations,
    DynamoSessions, DynamoSettings, DynamoStatuses, DynamoUsers,
};
use lambda_runtime::Error;
use std::collections::BTreeSet;
use std::sync::Mutex;

mod limits;
mod services;

pub use limits::{Lookups, PerDevice};

/// Leaks `value`: it lives as long as the process, as the handler that borrows it.
pub fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

static TABLES_READ: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

/// The table settings (`*_TABLE`) the stores built so far have read, in order.
pub fn tables_read() -> Vec<&'static str> {
    TABLES_READ
        .lock()
        .expect("the set of tables read")
        .iter()
        .copied()
        .collect()
}

/// The table named by the setting `var`, recorded as read.
fn table(var: &'static str) -> Result<String, Error> {
    let name = required(var)?;
    TABLES_READ
        .lock()
        .expect("the set of tables read")
        .insert(var);
    Ok(name)
}

/// A number of seconds from the setting `var`, `default` when it is unset or empty.
pub fn seconds(var: &str, default: i64) -> Result<i64, Error> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| format!("{var} must be a number of seconds, got {v:?}").into()),
        _ => Ok(default),
    }
}

/// What every store is built from: the SDK configuration and a DynamoDB client.
pub struct Stores {
    /// The SDK configuration (region, credentials, endpoints).
    pub sdk: aws_config::SdkConfig,
    dynamo: aws_sdk_dynamodb::Client,
}

impl Stores {
    /// Loads the SDK configuration and makes the DynamoDB client.
    pub async fn load() -> Self {
        let sdk = config::sdk_config().await;
        let dynamo = config::dynamodb(&sdk);
        Self { sdk, dynamo }
    }

    /// The account directory alone (`USERS_TABLE`).
    pub fn users(&self) -> Result<&'static DynamoUsers, Error> {
        Ok(leak(DynamoUsers::new(
            self.dynamo.clone(),
            table("USERS_TABLE")?,
        )))
    }

    /// Accounts with their devices' keys (`USERS_TABLE`, `API_KEYS_TABLE`).
    pub fn accounts(&self) -> Result<&'static DynamoAccounts, Error> {
        Ok(leak(self.accounts_owned()?))
    }

    fn accounts_owned(&self) -> Result<DynamoAccounts, Error> {
        Ok(DynamoAccounts::new(
            self.dynamo.clone(),
            table("USERS_TABLE")?,
            table("API_KEYS_TABLE")?,
        ))
    }

    /// API-key lookups (`API_KEYS_TABLE`).
    pub fn credentials(&self) -> Result<&'static DynamoCredentials, Error> {
        Ok(leak(DynamoCredentials::new(
            self.dynamo.clone(),
            table("API_KEYS_TABLE")?,
        )))
    }

    /// One-time connect tickets, kept beside the keys (`API_KEYS_TABLE`).
    pub fn connect_tickets(&self) -> Result<&'static DynamoConnectTickets, Error> {
        Ok(leak(DynamoConnectTickets::new(
            self.dynamo.clone(),
            table("API_KEYS_TABLE")?,
        )))
    }

    /// Pending registrations (`REGISTRATIONS_TABLE`).
    pub fn registrations(&self) -> Result<&'static DynamoRegistrations, Error> {
        Ok(leak(DynamoRegistrations::new(
            self.dynamo.clone(),
            table("REGISTRATIONS_TABLE")?,
        )))
    }

    /// Live connections and last seen (`CONNECTIONS_TABLE`).
    pub fn connections(&self) -> Result<&'static DynamoConnections, Error> {
        Ok(leak(DynamoConnections::new(
            self.dynamo.clone(),
            table("CONNECTIONS_TABLE")?,
        )))
    }

    /// Connections recorded only while their device exists (`CONNECTIONS_TABLE`, and
    /// `USERS_TABLE` to check the device; docs/security.md, revocation).
    pub fn connections_checking_devices(&self) -> Result<&'static DynamoConnections, Error> {
        Ok(leak(
            DynamoConnections::new(self.dynamo.clone(), table("CONNECTIONS_TABLE")?)
                .checking_devices_in(table("USERS_TABLE")?),
        ))
    }

    /// Settings, contacts and privacy, kept in the users table (`USERS_TABLE`).
    pub fn settings(&self) -> Result<&'static DynamoSettings, Error> {
        Ok(leak(DynamoSettings::new(
            self.dynamo.clone(),
            table("USERS_TABLE")?,
        )))
    }

    /// Chats and memberships (`SESSIONS_TABLE`).
    pub fn sessions(&self) -> Result<&'static DynamoSessions, Error> {
        Ok(leak(DynamoSessions::new(
            self.dynamo.clone(),
            table("SESSIONS_TABLE")?,
        )))
    }

    /// Messages and their receipts (`MESSAGES_TABLE`; `SESSIONS_TABLE` for the watermarks a
    /// send moves in the same transaction).
    pub fn messages(&self) -> Result<&'static DynamoMessages, Error> {
        Ok(leak(DynamoMessages::new(
            self.dynamo.clone(),
            table("MESSAGES_TABLE")?,
            table("SESSIONS_TABLE")?,
        )))
    }

    /// The chats and their messages, which every chat operation reads.
    pub fn chats(&self) -> Result<(&'static DynamoSessions, &'static DynamoMessages), Error> {
        Ok((self.sessions()?, self.messages()?))
    }

    /// The key directory (`KEYS_TABLE`).
    pub fn keys(&self) -> Result<&'static DynamoKeys, Error> {
        Ok(leak(DynamoKeys::new(
            self.dynamo.clone(),
            table("KEYS_TABLE")?,
        )))
    }

    /// Device-to-device queues (`DEVICE_QUEUE_TABLE`).
    pub fn queues(&self) -> Result<&'static DynamoDeviceQueues, Error> {
        Ok(leak(DynamoDeviceQueues::new(
            self.dynamo.clone(),
            table("DEVICE_QUEUE_TABLE")?,
        )))
    }

    /// Status posts (`STATUS_TABLE`).
    pub fn statuses(&self) -> Result<&'static DynamoStatuses, Error> {
        Ok(leak(DynamoStatuses::new(
            self.dynamo.clone(),
            table("STATUS_TABLE")?,
        )))
    }

    /// Backup records (`BACKUP_TABLE`).
    pub fn backups(&self) -> Result<&'static DynamoBackups, Error> {
        Ok(leak(DynamoBackups::new(
            self.dynamo.clone(),
            table("BACKUP_TABLE")?,
        )))
    }

    /// Media records and references (`MEDIA_TABLE`).
    pub fn media(&self) -> Result<&'static DynamoMedia, Error> {
        Ok(leak(DynamoMedia::new(
            self.dynamo.clone(),
            table("MEDIA_TABLE")?,
        )))
    }

    /// Link requests alone (`LINKS_TABLE`): create and read.
    pub fn link_requests(&self) -> Result<&'static DynamoLinks, Error> {
        Ok(leak(DynamoLinks::requests(
            self.dynamo.clone(),
            table("LINKS_TABLE")?,
        )))
    }

    /// Link requests and their approval, which records a pending link for the account
    /// (`LINKS_TABLE`, `USERS_TABLE`).
    pub fn link_approvals(&self) -> Result<&'static DynamoLinks, Error> {
        Ok(leak(DynamoLinks::approvals(
            self.dynamo.clone(),
            table("LINKS_TABLE")?,
            DynamoUsers::new(self.dynamo.clone(), table("USERS_TABLE")?),
        )))
    }

    /// Link requests completed with the new device and its key in one transaction
    /// (`LINKS_TABLE`, `USERS_TABLE`, `API_KEYS_TABLE`).
    pub fn link_completions(&self) -> Result<&'static DynamoLinks, Error> {
        Ok(leak(DynamoLinks::new(
            self.dynamo.clone(),
            table("LINKS_TABLE")?,
            self.accounts_owned()?,
        )))
    }
}
