//! The `devices` function binary; see `courier_lambda::services::devices`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::devices().await
}
