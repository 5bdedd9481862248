//! The HTTP API: registration, verification, and linking a new device.

use crate::ClientError;
use courier_core::protocol::{
    ConnectTicketResponse, Credentials, DeviceInfo, ErrorDetail, RegisterAccountRequest,
    RegisterAccountResponse, ValidateAccountRequest,
};
use serde::de::DeserializeOwned;

/// Reply to `POST /v1/devices/link-requests`.
pub use courier_core::protocol::LinkRequested as LinkRequest;

/// What polling a link request says.
#[derive(Debug, Clone)]
pub enum LinkPoll {
    /// Not approved yet.
    Pending,
    /// Approved: this device's credentials (handed out once).
    Approved(Credentials),
}

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

    /// Exchanges the code for this device's credentials (for a number whose account has no
    /// registration PIN; otherwise the answer is `PIN_REQUIRED`, see [`Self::verify_with_pin`]).
    pub async fn verify(
        &self,
        phone: &str,
        code: &str,
        device: DeviceInfo,
    ) -> Result<Credentials, ClientError> {
        self.verify_with_pin(phone, code, device, None).await
    }

    /// Exchanges the code, and the account's registration PIN when it has one (two-step
    /// verification), for this device's credentials. A wrong PIN answers `UNAUTHORIZED` with
    /// the tries left and leaves the code usable; after 10 wrong PINs, `LIMIT_EXCEEDED` for 7
    /// days, even with the right one.
    pub async fn verify_with_pin(
        &self,
        phone: &str,
        code: &str,
        device: DeviceInfo,
        pin: Option<&str>,
    ) -> Result<Credentials, ClientError> {
        let body = ValidateAccountRequest {
            phone: phone.to_owned(),
            code: code.to_owned(),
            device,
            pin: pin.map(str::to_owned),
        };
        self.post("/v1/accounts/verify", &body).await
    }

    /// A one-time connect ticket for [`crate::Session::connect_with_ticket`], for a client that
    /// cannot send the key in a header of its WebSocket handshake (`api_key` goes in this
    /// request's `Authorization` header).
    pub async fn connect_ticket(
        &self,
        api_key: &str,
    ) -> Result<ConnectTicketResponse, ClientError> {
        Self::exchange(
            self.http
                .post(format!("{}/v1/connect-tickets", self.base))
                .bearer_auth(api_key),
        )
        .await
    }

    /// Asks for a link code for this (new) device.
    pub async fn request_link(&self, device: DeviceInfo) -> Result<LinkRequest, ClientError> {
        self.post("/v1/devices/link-requests", &device).await
    }

    /// Polls a link request once: pending, or approved with the credentials. `EXPIRED` once
    /// the code expired, `NOT_FOUND` for an unknown id or credentials already collected.
    pub async fn poll_link(&self, link_id: &str) -> Result<LinkPoll, ClientError> {
        let resp = self
            .http
            .get(format!("{}/v1/devices/link-requests/{link_id}", self.base))
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        match status {
            202 => Ok(LinkPoll::Pending),
            _ => Self::decode::<Credentials>(status, text).map(LinkPoll::Approved),
        }
    }

    /// Polls until the link is approved (every `every`), or fails (expired, unknown).
    pub async fn wait_for_link(
        &self,
        link_id: &str,
        every: std::time::Duration,
    ) -> Result<Credentials, ClientError> {
        loop {
            match self.poll_link(link_id).await {
                Ok(LinkPoll::Approved(c)) => return Ok(c),
                Ok(LinkPoll::Pending) => {}
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        Self::exchange(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// Sends a request and decodes its answer (or its error document).
    async fn exchange<T: DeserializeOwned>(
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let resp = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Self::decode(status, text)
    }

    fn decode<T: DeserializeOwned>(status: u16, text: String) -> Result<T, ClientError> {
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
