//! The `authorizer` function: the WebSocket API's `$connect` REQUEST authorizer. It reads API
//! keys and connect tickets behind the failed-connection limit.

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest as Request;
use courier_core::clock::SystemClock;
use courier_lambda::stores::leak;
use courier_lambda::{authorizer, serve};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    courier_lambda::telemetry::init();
    serve::event("authorize", |s| {
        let credentials = s.credentials()?;
        let tickets = s.connect_tickets()?;
        let failures = leak(s.throttle(|l| l.failed_connects)?);
        Ok(move |request: Request| async move {
            authorizer::handle_limited(
                credentials,
                Some(tickets),
                Some(failures),
                &SystemClock,
                &request,
            )
            .await
        })
    })
    .await
}
