//! `$connect` / `$disconnect`: keep the set of a device's live connections, which fan-out reads.

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ids::ConnectionId;
use crate::ports::{Connection, ConnectionStore, DeviceCredential};

/// Records a connection the authorizer let in.
#[tracing::instrument(skip_all, fields(user_id = %who.user_id, device_id = %who.device_id))]
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
    store.add(&connection).await?;
    Ok(())
}

/// Forgets a connection (closed by the client, the gateway or the management API).
#[tracing::instrument(skip_all)]
pub async fn disconnect(
    store: &dyn ConnectionStore,
    connection_id: &ConnectionId,
) -> Result<(), ApiError> {
    store.remove(connection_id).await?;
    Ok(())
}
