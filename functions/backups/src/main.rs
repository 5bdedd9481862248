//! The `backups` function binary; see `courier_lambda::services::backups_service`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::backups_service().await
}
