//! The narrow interfaces use cases need. Each adapter (DynamoDB, SNS, the API Gateway management
//! API, or the in-memory ones in [`crate::memory`]) implements the ones it can serve; each
//! function is given only the ports its operation uses, which is also its IAM policy.

mod accounts;
mod backups;
mod chat;
mod connections;
mod keys;
mod links;
mod objects;
mod rate_limits;
mod settings;
mod statuses;

pub use accounts::*;
pub use backups::*;
pub use chat::*;
pub use connections::*;
pub use keys::*;
pub use links::*;
pub use objects::*;
pub use rate_limits::*;
pub use settings::*;
pub use statuses::*;
