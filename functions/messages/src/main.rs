//! The `messages` function binary; see `courier_lambda::services::messages`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::messages().await
}
