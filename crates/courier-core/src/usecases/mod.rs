//! One module per operation: parse the request, check who may do it, apply it through the ports.

pub mod analytics;
pub mod authorize;
pub mod backups;
pub mod connections;
pub mod delete_account;
pub mod deliver;
pub mod device_messages;
pub mod direct_chat;
pub mod discover_contacts;
pub mod fan_out;
pub mod groups;
pub mod keys;
pub mod link_device;
pub mod lookup_user;
pub mod media;
pub mod profile;
pub mod push_token;
pub mod read_messages;
pub mod receipts;
pub mod register_account;
pub mod remove_device;
pub mod send_message;
pub mod status;
pub mod validate_account;

use crate::ids::ConnectionId;
use crate::ports::{ConnectionGateway, GatewayError};

/// Closes connections through the gateway; one that is already gone counts as closed.
pub(crate) async fn close_connections(
    gateway: &dyn ConnectionGateway,
    connections: impl IntoIterator<Item = &ConnectionId>,
) -> Result<(), crate::ApiError> {
    for id in connections {
        match gateway.close(id).await {
            Ok(()) | Err(GatewayError::Gone) => {}
            Err(GatewayError::Refused(why)) => {
                return Err(crate::error::PortError::backend(why).into());
            }
            Err(GatewayError::Other(e)) => return Err(e.into()),
        }
    }
    Ok(())
}
