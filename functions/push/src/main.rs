//! The `push` function: `registerPushToken`.

use courier_core::usecases::push_token;
use courier_lambda::serve;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        "registerPushToken" => {
            serve::limited_action(
                "registerPushToken",
                |l| l.actions,
                |s| Ok(courier_lambda::stores::leak((s.push(), s.connections()?))),
                async |(push, presence), who, p| {
                    push_token::register_push_token(*push, *presence, who, p).await
                },
            )
            .await
        }
        other => Err(serve::unknown("push", other)),
    }
}
