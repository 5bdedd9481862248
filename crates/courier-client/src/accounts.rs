//! The HTTP API: registration and verification.

use crate::ClientError;
use courier_core::protocol::{
    Credentials, DeviceInfo, ErrorDetail, RegisterAccountRequest, RegisterAccountResponse,
    ValidateAccountRequest,
};
use serde::de::DeserializeOwned;

/// A client of the HTTP API at one base URL.
#[derive(Clone)]
pub struct AccountsClient {
    http: reqwest::Client,
    base: String,
}

impl AccountsClient {
    /// `base` is the HTTP API URL, e.g. `http://127.0.0.1:3000`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Asks for a code by SMS to `phone`.
    pub async fn register(&self, phone: &str) -> Result<RegisterAccountResponse, ClientError> {
        self.post(
            "/v1/accounts",
            &RegisterAccountRequest {
                phone: phone.to_owned(),
            },
        )
        .await
    }

    /// Exchanges the code for this device's credentials.
    pub async fn verify(
        &self,
        phone: &str,
        code: &str,
        device: DeviceInfo,
    ) -> Result<Credentials, ClientError> {
        let body = ValidateAccountRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device,
        };
        self.post("/v1/accounts/verify", &body).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text)
                .map_err(|_| ClientError::Unexpected { status, body: text });
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: ErrorDetail,
        }
        match serde_json::from_str::<Envelope>(&text) {
            Ok(e) => Err(ClientError::Api(e.error)),
            Err(_) => Err(ClientError::Unexpected { status, body: text }),
        }
    }
}
