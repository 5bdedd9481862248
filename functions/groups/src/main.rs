//! The `groups` function binary; see `courier_lambda::services::groups_service`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::groups_service().await
}
