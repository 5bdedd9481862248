//! The `media` function binary; see `courier_lambda::services::media_service`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::media_service().await
}
