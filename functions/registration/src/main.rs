//! The `registration` function binary; see `courier_lambda::services::registration`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::registration().await
}
