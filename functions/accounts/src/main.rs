//! The `accounts` function binary; see `courier_lambda::services::accounts_service`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::accounts_service().await
}
