//! The smallest Lambda function `lambda_runtime` makes: the baseline `courier-coldstart`
//! compares every function's cold start with (built with the same profile).

use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async {
        Ok::<_, Error>(serde_json::json!({}))
    }))
    .await
}
