//! The `fanout` function: the messages table's stream, delivered to every member device, for
//! what `sendMessage` did not deliver itself.

use aws_lambda_events::event::dynamodb::Event;
use courier_lambda::stores::leak;
use courier_lambda::{serve, stream};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    courier_lambda::telemetry::init();
    serve::event("fanOut", |s| {
        let (sessions, messages) = s.chats()?;
        let deliver = leak(s.deliverer(true)?);
        let grace = stream::grace();
        Ok(move |event: Event| async move {
            Ok::<_, Error>(stream::handle(sessions, deliver, messages, grace, event).await)
        })
    })
    .await
}
