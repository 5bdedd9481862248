//! The application-level heartbeat: a request the server answers, sent on an idle connection.
//!
//! API Gateway closes a WebSocket connection after 10 minutes without activity, and does not
//! document whether ping/pong control frames count as activity (they are reported not to,
//! reliably). A request routed to a function and answered does count, and its reply also proves
//! the connection is alive end to end (a socket can look open after a laptop sleeps, or behind a
//! NAT that forgot it). Courier Web does the same (`web/src/net.ts`).

use std::sync::Arc;
use std::time::Duration;

use crate::ClientError;
use crate::session::Session;

/// What a heartbeat asks: the request Courier Web's heartbeat sends, a read every account may
/// make (no rate limit applies), answered with `{"sessions": [...], "hasMore"}`. It asks for a
/// page of one session: the reply is all it needs, not the list.
pub const ACTION: &str = "listSessions";

fn page_of_one() -> serde_json::Value {
    let params = courier_core::protocol::ListSessionsParams {
        after: None,
        limit: Some(1),
    };
    serde_json::to_value(params).expect("protocol parameters are JSON")
}

/// Sends one heartbeat and waits up to `timeout` for its reply: whether the connection is alive.
/// An error reply counts as alive too (the request went through the gateway and came back).
pub async fn beat(session: &Session, timeout: Duration) -> bool {
    match session
        .request_with_timeout(ACTION, page_of_one(), timeout)
        .await
    {
        Ok(_) | Err(ClientError::Api(_)) => true,
        Err(e) => {
            tracing::debug!("heartbeat failed: {e}");
            false
        }
    }
}

/// Beats in the background, and drops the connection when no reply comes in `timeout`, so the
/// client reconnects instead of waiting on a dead socket.
pub fn spawn(session: Arc<Session>, timeout: Duration) {
    tokio::spawn(async move {
        if !beat(&session, timeout).await {
            tracing::debug!("no reply to the heartbeat; dropping the connection");
            session.abort();
        }
    });
}
