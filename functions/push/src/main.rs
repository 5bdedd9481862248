//! The `push` function binary; see `courier_lambda::services::push`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::push().await
}
