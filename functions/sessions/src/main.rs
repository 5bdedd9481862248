//! The `sessions` function binary; see `courier_lambda::services::sessions`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::sessions().await
}
