//! `$connect` / `$disconnect`: keep the set of a device's live connections, which fan-out reads.

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::ConnectionId;
use crate::ports::{Connection, ConnectionStore, DeviceCredential, LastSeenStore};

/// Records a connection the authorizer let in, only while its device exists: a key revoked
/// after the authorizer checked it is refused here (`UNAUTHORIZED`, and the gateway refuses the
/// handshake), so no connection of a revoked device is left open (docs/security.md).
#[tracing::instrument(skip_all, fields(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym()))]
pub async fn connect(
    store: &dyn ConnectionStore,
    clock: &dyn Clock,
    connection_id: ConnectionId,
    who: &DeviceCredential,
) -> Result<(), ApiError> {
    let connection = Connection {
        connection_id,
        user_id: who.user_id.clone(),
        device_id: who.device_id.clone(),
        connected_at: clock.now(),
    };
    match store.add(&connection).await {
        Ok(()) => Ok(()),
        Err(crate::error::PortError::Conflict) => {
            tracing::info!("connection refused: the device was removed after authorization");
            Err(ApiError::new(
                crate::error::ErrorCode::Unauthorized,
                "this device was removed",
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Forgets a connection (closed by the client, the gateway or the management API) and records
/// the user's last seen time. A user is online while any of its devices is connected, so last
/// seen is the time its most recent connection closed. A connection already forgotten (by
/// `deleteAccount`, or a second `$disconnect`) records nothing.
#[tracing::instrument(skip_all)]
pub async fn disconnect(
    store: &dyn ConnectionStore,
    last_seen: &dyn LastSeenStore,
    clock: &dyn Clock,
    connection_id: &ConnectionId,
) -> Result<(), ApiError> {
    if let Some(c) = store.remove(connection_id).await? {
        last_seen.record_last_seen(&c.user_id, clock.now()).await?;
    }
    Ok(())
}
