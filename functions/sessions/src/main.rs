//! The `sessions` function: `initiateDirectChatSession` and `listSessions`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as Request;
use courier_core::clock::SystemClock;
use courier_core::usecases::direct_chat;
use courier_lambda::stores::leak;
use courier_lambda::{inline, routes, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        "initiateDirectChatSession" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                // The handshake is delivered as `sendMessage` delivers a message (inline).
                let deliverer = leak(s.deliverer(true)?);
                let deps = leak(direct_chat::Deps {
                    // Only read: does the peer exist?
                    accounts: s.users()?,
                    sessions,
                    messages,
                    clock: &SystemClock,
                    handshakes_per_target: Some(
                        s.stranger_cap(|l| l.handshakes_per_target, "chats")?,
                    ),
                    blocks: Some(s.settings()?),
                });
                let limit = s.per_device(|l| l.actions)?;
                Ok(move |event: Request| async move {
                    routes::action("initiateDirectChatSession", &event, |who, p| async move {
                        limit.take(&who).await?;
                        let started = direct_chat::initiate(deps, &who, p).await?;
                        // Before the reply: the handshake goes to the peer's few devices.
                        if let Some(out) = &started.outbound {
                            inline::deliver(sessions, deliverer, messages, out).await;
                        }
                        Ok(started.reply)
                    })
                    .await
                })
            })
            .await
        }
        "listSessions" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                Ok(move |event: Request| async move {
                    routes::action("listSessions", &event, |who, p| async move {
                        direct_chat::list_sessions(sessions, messages, &who, p).await
                    })
                    .await
                })
            })
            .await
        }
        other => Err(serve::unknown("sessions", other)),
    }
}
