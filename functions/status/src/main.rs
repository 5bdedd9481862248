//! The `status` function binary; see `courier_lambda::services::status`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::status().await
}
