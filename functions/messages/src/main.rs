//! The `messages` function: `sendMessage`, `readNewMessages`, `ackMessages`,
//! `getMessageStatus`, `deleteMessage`, `sendTyping` and `setDisappearingTimer`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest as Request;
use courier_core::chat::Receipt;
use courier_core::clock::SystemClock;
use courier_core::protocol::AckMessagesParams;
use courier_core::usecases::{
    delete_message, disappearing, read_messages, receipts, send_message, typing,
};
use courier_lambda::stores::leak;
use courier_lambda::telemetry::{self, Unit};
use courier_lambda::{inline, routes, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        "sendMessage" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                let send = leak(send_message::Deps {
                    sessions,
                    messages,
                    clock: &SystemClock,
                    media: Some(s.attach()?),
                    throttle: Some(s.throttle(|l| l.sends)?),
                    blocks: Some(s.settings()?),
                });
                // Inline delivery: live devices by post, offline ones by push, as the fan-out
                // does.
                let handler = leak(inline::SendMessage {
                    send,
                    sessions,
                    deliver: leak(s.deliverer(true)?),
                    log: messages,
                });
                Ok(move |event: Request| async move { inline::handle(handler, &event).await })
            })
            .await
        }
        "readNewMessages" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                Ok(move |event: Request| async move {
                    routes::action("readNewMessages", &event, |who, p| async move {
                        read_messages::read_new_messages(sessions, messages, &SystemClock, &who, p)
                            .await
                    })
                    .await
                })
            })
            .await
        }
        "getMessageStatus" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                let settings = s.settings()?;
                Ok(move |event: Request| async move {
                    routes::action("getMessageStatus", &event, |who, p| async move {
                        receipts::get_message_status(
                            sessions,
                            messages,
                            settings,
                            &SystemClock,
                            &who,
                            p,
                        )
                        .await
                    })
                    .await
                })
            })
            .await
        }
        "ackMessages" => {
            serve::ws(|s| {
                let (sessions, messages) = s.chats()?;
                let deps = leak(receipts::AckDeps {
                    sessions,
                    messages,
                    deliver: s.deliverer(false)?,
                    settings: s.settings()?,
                    clock: &SystemClock,
                });
                // Acks move watermarks and post status events to others, at the pace messages
                // arrive: they share the send rule (a bucket of their own).
                let limit = s.per_device(|l| l.sends)?;
                Ok(move |event: Request| async move {
                    routes::action(
                        "ackMessages",
                        &event,
                        |who, p: AckMessagesParams| async move {
                            limit.take(&who).await?;
                            let metric = match p.status {
                                Receipt::Read => "MessagesRead",
                                _ => "MessagesDelivered",
                            };
                            let acked = receipts::ack_messages_measured(deps, &who, p).await?;
                            telemetry::count(metric, 1);
                            if let Some(latency) = acked.delivery_latency {
                                telemetry::observe(
                                    "DeliveryLatencyMs",
                                    Unit::Milliseconds,
                                    latency.as_secs_f64() * 1000.0,
                                );
                            }
                            Ok(acked.reply)
                        },
                    )
                    .await
                })
            })
            .await
        }
        "deleteMessage" => {
            serve::action(
                "deleteMessage",
                |s| {
                    let (sessions, messages) = s.chats()?;
                    Ok(leak(delete_message::Deps {
                        sessions,
                        messages,
                        media: s.media()?,
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.actions)?),
                        // Delivered as `sendMessage` delivers: live devices now, the fan-out
                        // finishing what this did not.
                        deliver: s.deliverer(true)?,
                        log: Some(messages),
                    }))
                },
                delete_message::delete_message,
            )
            .await
        }
        "sendTyping" => {
            serve::action(
                "sendTyping",
                |s| {
                    Ok(leak(typing::Deps {
                        sessions: s.sessions()?,
                        settings: s.settings()?,
                        // Live devices only: a typing notice is never pushed.
                        deliver: s.deliverer(false)?,
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.sends)?),
                    }))
                },
                typing::send_typing,
            )
            .await
        }
        "setDisappearingTimer" => {
            serve::action(
                "setDisappearingTimer",
                |s| {
                    let (sessions, messages) = s.chats()?;
                    Ok(leak(disappearing::Deps {
                        sessions,
                        messages,
                        clock: &SystemClock,
                        throttle: Some(s.throttle(|l| l.actions)?),
                        deliver: s.deliverer(true)?,
                        log: Some(messages),
                        test_seconds: test_timer()?,
                    }))
                },
                disappearing::set_disappearing_timer,
            )
            .await
        }
        other => Err(serve::unknown("messages", other)),
    }
}

/// The extra timer the template's `DisappearingTestSeconds` allows for tests
/// (`COURIER_DISAPPEARING_TEST_SECONDS`; absent or 0 in production: none).
fn test_timer() -> Result<Option<u32>, Error> {
    match std::env::var("COURIER_DISAPPEARING_TEST_SECONDS") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(format!("COURIER_DISAPPEARING_TEST_SECONDS is not a number: {v}").into()),
        },
    }
}
