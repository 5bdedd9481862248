//! One module per operation: parse the request, check who may do it, apply it through the ports.

pub mod analytics;
pub mod authorize;
pub mod backups;
pub mod blocks;
pub mod connect_ticket;
pub mod connections;
pub mod delete_account;
pub mod delete_message;
pub mod deliver;
pub mod device_messages;
pub mod direct_chat;
pub mod disappearing;
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
pub mod registration_pin;
pub mod remove_device;
pub mod send_message;
pub mod session_checks;
pub mod status;
pub mod typing;
pub mod validate_account;

use crate::ApiError;
use crate::ids::ConnectionId;
use crate::ports::{ConnectionGateway, ConnectionStore, GatewayError};

/// A store that only some operations of a use case are given (each function is built with the
/// tables its policy names, docs/architecture.md): the store, or an internal error naming it,
/// which only a function wired without it can hit.
pub(crate) fn wired<'a, T: ?Sized>(store: Option<&'a T>, what: &str) -> Result<&'a T, ApiError> {
    store.ok_or_else(|| ApiError::internal(format!("this function is built without {what}")))
}

/// How long after its record is written a connection may still be inside its `$connect`: the
/// `$connect` function's timeout (10 s, template.yaml's Globals) and a margin.
pub const CONNECT_WINDOW_SECS: i64 = 12;

/// Closes the connections of revoked devices through the gateway; one that is already gone
/// counts as closed.
///
/// The gateway also answers `Gone` for a connection still inside its `$connect` (recorded, but
/// not open until `$connect` returns), which would then open and be served. So a `Gone`
/// connection whose record is still there and younger than [`CONNECT_WINDOW_SECS`] is closed
/// again until the close succeeds or the window ends (docs/security.md, revocation).
pub(crate) async fn close_connections(
    store: &dyn ConnectionStore,
    gateway: &dyn ConnectionGateway,
    connections: impl IntoIterator<Item = &ConnectionId>,
) -> Result<(), crate::ApiError> {
    for id in connections {
        let mut outcome = gateway.close(id).await;
        if matches!(outcome, Err(GatewayError::Gone))
            && let Some(c) = store.connection(id).await?
        {
            let until = c.connected_at + chrono::Duration::seconds(CONNECT_WINDOW_SECS);
            outcome = gateway.close_opening(id, until).await;
        }
        match outcome {
            Ok(()) | Err(GatewayError::Gone) => {}
            Err(GatewayError::Refused(why)) => {
                return Err(crate::error::PortError::backend(why).into());
            }
            Err(GatewayError::Other(e)) => return Err(e.into()),
        }
    }
    Ok(())
}
