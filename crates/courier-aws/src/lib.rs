//! Adapters from courier-core's ports to AWS: DynamoDB repositories, SNS for SMS, and the API
//! Gateway management API; plus the typed configuration each function reads once at cold start.
//!
//! - [`config`]: SDK configuration and table names from the environment.
//! - [`dynamo`]: the DynamoDB repositories (one module per table).
//! - [`sms`]: SMS through SNS.
//! - [`gateway`]: posting to and closing WebSocket connections.
//! - [`s3`]: object storage (presigned uploads and downloads of ciphertext).
//! - [`trace`]: the invocation's X-Ray trace id on every AWS call, without the environment.
//! - [`capacity`]: what the calls cost (DynamoDB calls and consumed capacity, management API
//!   calls, SNS publishes), per process.

pub mod capacity;
pub mod config;
pub mod dynamo;
pub mod gateway;
pub mod push;
pub mod s3;
pub mod sms;
pub mod trace;
