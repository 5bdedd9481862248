//! The `authorizer` function binary; see `courier_lambda::services::authorizer`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    courier_lambda::services::authorizer().await
}
