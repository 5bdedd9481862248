//! In-memory ports: the same contracts as the DynamoDB adapters (conditional writes included),
//! for use-case tests and for handler tests in the layers above.

mod accounts;
mod backups;
mod chat;
mod connections;
mod keys;
mod objects;
mod rate_limits;
mod settings;
mod statuses;

pub use accounts::*;
pub use backups::*;
pub use chat::*;
pub use connections::*;
pub use keys::*;
pub use objects::*;
pub use rate_limits::*;
pub use settings::*;
pub use statuses::*;
