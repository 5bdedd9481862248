//! The `connections` function: the WebSocket routes `$connect`, `$disconnect` and `$default`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as Request;
use courier_core::clock::SystemClock;
use courier_lambda::{routes, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        // Answers from the request alone.
        "default" => {
            serve::ws(|_| Ok(|event: Request| async move { routes::default_route(&event) })).await
        }
        // Records a connection only while its device exists (docs/security.md, revocation).
        "connect" => {
            serve::ws(|s| {
                let store = s.connections_checking_devices()?;
                Ok(move |event: Request| async move {
                    routes::connect(store, store, &SystemClock, &event).await
                })
            })
            .await
        }
        "disconnect" => {
            serve::ws(|s| {
                let store = s.connections()?;
                Ok(move |event: Request| async move {
                    routes::disconnect(store, store, &SystemClock, &event).await
                })
            })
            .await
        }
        other => Err(serve::unknown("connections", other)),
    }
}
