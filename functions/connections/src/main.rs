//! The `connections` function binary; see `courier_lambda::services::connections`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::connections().await
}
