//! The `fanout` function binary; see `courier_lambda::services::fanout`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::fanout().await
}
