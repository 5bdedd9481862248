//! Handlers fed the sample events in `events/`, on in-memory ports: the status codes, reply
//! frames and stored state a client and an operator would check. This file holds the shared
//! fixtures (events, in-memory ports, a chat); the tests are in one file per route group.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
use courier_core::clock::SystemClock;
use courier_core::memory::*;
use courier_core::ports::{
    ActivityStore, ConnectionStore, CredentialStore, LastSeenStore, SettingsStore,
};
use courier_core::usecases::{delete_account, register_account, validate_account};
use courier_core::{ConnectionId, UserId};
use courier_lambda::{authorizer, http, routes};
use serde_json::Value;

/// No grace for inline deliveries: these batches hold no message written for inline delivery.
const NO_GRACE: std::time::Duration = std::time::Duration::ZERO;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/../../events/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn http_event(name: &str, body: Option<&str>) -> lambda_http::Request {
    let mut v: Value = serde_json::from_str(&fixture(name)).unwrap();
    if let Some(b) = body {
        v["body"] = Value::String(b.to_owned());
    }
    lambda_http::request::from_str(&v.to_string()).unwrap()
}

fn ws_event(name: &str) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_str(&fixture(name)).unwrap()
}

fn body_json(resp: &lambda_http::Response<lambda_http::Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).unwrap()
}

fn frame(resp: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Value {
    match resp.body.as_ref().expect("a reply body") {
        aws_lambda_events::encodings::Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

#[derive(Default)]
struct Ports {
    registrations: MemoryRegistrations,
    accounts: MemoryAccounts,
    connections: MemoryConnections,
    sms: RecordingSms,
    gateway: RecordingGateway,
    keys: MemoryKeys,
    queues: MemoryDeviceQueues,
    sessions: MemorySessions,
    messages: MemoryMessages,
    settings: MemorySettings,
    statuses: courier_core::memory::MemoryStatuses,
    backups: MemoryBackups,
    objects: MemoryObjects,
}

impl Ports {
    fn register(&self) -> register_account::Deps<'_> {
        register_account::Deps {
            registrations: &self.registrations,
            sms: &self.sms,
            clock: &SystemClock,
            code_lifetime_secs: register_account::CODE_LIFETIME_SECS,
            test_numbers: None,
            limits: None,
            sms_guard: None,
        }
    }
    fn validate(&self) -> validate_account::Deps<'_> {
        validate_account::Deps {
            registrations: &self.registrations,
            accounts: &self.accounts,
            connections: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
            clock: &SystemClock,
            data: self.data(),
        }
    }
    fn delete(&self) -> delete_account::Deps<'_> {
        delete_account::Deps {
            accounts: &self.accounts,
            connections: &self.connections,
            gateway: &self.gateway,
            keys: &self.keys,
            queues: &self.queues,
            clock: &SystemClock,
            data: self.data(),
        }
    }
    /// What deleting an account (or re-registering its number) deletes with it.
    fn data(&self) -> delete_account::AccountData<'_> {
        delete_account::AccountData {
            sessions: &self.sessions,
            groups: &self.sessions,
            messages: &self.messages,
            presence: &self.connections,
            settings: &self.settings,
            statuses: &self.statuses,
            backups: &self.backups,
            objects: &self.objects,
        }
    }
    /// The one reply `resp`'s route posted through the management API (its route response
    /// carries none).
    fn posted_reply(&self, resp: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Value {
        assert_eq!(resp.status_code, 200);
        assert!(
            resp.body.is_none(),
            "the reply went through the management API"
        );
        let posted = self.gateway.posted();
        assert_eq!(posted.len(), 1);
        serde_json::from_str(&posted[0].1).unwrap()
    }
}

async fn signed_up(p: &Ports) -> (String, courier_core::protocol::Credentials) {
    let _ = http::register_account(&p.register(), http_event("register-account.json", None)).await;
    let code = p.sms.last_code("+14155550100").unwrap();
    let req = courier_core::protocol::ValidateAccountRequest {
        phone: "+14155550100".into(),
        code,
        device: courier_core::protocol::DeviceInfo {
            name: "Pixel".into(),
            platform: courier_core::protocol::Platform::Ios,
        },
        pin: None,
    };
    let creds = validate_account::validate_account(&p.validate(), &req)
        .await
        .unwrap();
    (creds.api_key.clone(), creds)
}

fn authorizer_event(name: &str, key: &str) -> ApiGatewayCustomAuthorizerRequestTypeRequest {
    let text = fixture(name).replace("k_test", key);
    serde_json::from_str(&text).unwrap()
}

fn with_caller(
    mut e: ApiGatewayWebsocketProxyRequest,
    user: &str,
    device: &str,
) -> ApiGatewayWebsocketProxyRequest {
    let f = &mut e.request_context.authorizer.fields;
    f.insert("userId".into(), Value::String(user.into()));
    f.insert("deviceId".into(), Value::String(device.into()));
    e
}

fn send_deps<'a>(
    sessions: &'a MemorySessions,
    messages: &'a MemoryMessages,
) -> courier_core::usecases::send_message::Deps<'a> {
    courier_core::usecases::send_message::Deps {
        sessions,
        messages,
        clock: &SystemClock,
        media: None,
        throttle: None,
        blocks: None,
    }
}

/// The fixture events' direct session of their caller (`u_test`) and `u_peer`, created in
/// `sessions`.
async fn caller_session(sessions: &MemorySessions) -> courier_core::SessionId {
    let (me, peer) = (
        UserId::from_trusted("u_test"),
        UserId::from_trusted("u_peer"),
    );
    direct_session(sessions, &me, &peer).await
}

/// The fixture events' direct session between `a` and `b`, created in `sessions`.
async fn direct_session(
    sessions: &MemorySessions,
    a: &UserId,
    b: &UserId,
) -> courier_core::SessionId {
    use courier_core::ports::SessionStore;
    let session = courier_core::SessionId::from_trusted("s_00000000000000000000000000000000");
    sessions
        .create_direct(&session, a, b, chrono::Utc::now())
        .await
        .unwrap();
    session
}

/// A connection store and a gateway where each `(user, device, connection)` is connected.
async fn connected(devices: &[(&UserId, &str, &str)]) -> (MemoryConnections, RecordingGateway) {
    use courier_core::ports::Connection;
    let connections = MemoryConnections::default();
    let gateway = RecordingGateway::default();
    for (user, device, conn) in devices {
        let c = ConnectionId::new(*conn);
        connections
            .add(&Connection {
                connection_id: c.clone(),
                user_id: (*user).clone(),
                device_id: courier_core::DeviceId::from_trusted(*device),
                connected_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        gateway.open(&c);
    }
    (connections, gateway)
}

fn device_of(user: &str, device: &str, primary: bool) -> courier_core::ports::Device {
    courier_core::ports::Device {
        user_id: UserId::from_trusted(user),
        device_id: courier_core::DeviceId::from_trusted(device),
        name: "web".into(),
        platform: courier_core::protocol::Platform::Web,
        primary,
        key_hash: courier_core::secrets::ApiKey::generate().hash(),
        created_at: chrono::Utc::now(),
    }
}

fn window(max: u32) -> courier_core::rate_limit::Rule {
    courier_core::rate_limit::Rule::Window {
        max,
        window_secs: 3600,
    }
}

/// A direct session of `u_test` (the fixtures' caller, device `d_test`, connection
/// `Zx9kQcT2oAMCJQg=`) and `u_peer`, with the peer's phone and the caller's second device live.
struct Chat {
    sessions: MemorySessions,
    messages: MemoryMessages,
    connections: MemoryConnections,
    gateway: RecordingGateway,
    session: courier_core::SessionId,
}

const CALLER_CONN: &str = "Zx9kQcT2oAMCJQg=";

impl Chat {
    async fn new() -> Chat {
        let sessions = MemorySessions::default();
        let (me, peer) = (
            UserId::from_trusted("u_test"),
            UserId::from_trusted("u_peer"),
        );
        let session = direct_session(&sessions, &me, &peer).await;
        let (connections, gateway) = connected(&[
            (&me, "d_test", CALLER_CONN),
            (&me, "d_laptop", "c_laptop"),
            (&peer, "d_peer", "c_peer"),
        ])
        .await;
        Chat {
            sessions,
            messages: MemoryMessages::default(),
            connections,
            gateway,
            session,
        }
    }

    fn deliverer(&self) -> courier_core::usecases::deliver::Deliverer<'_> {
        courier_core::usecases::deliver::Deliverer {
            presence: &self.connections,
            connections: &self.connections,
            gateway: &self.gateway,
            push: None,
        }
    }

    /// `event` (a `sendMessage` frame) through the inline `sendMessage` handler, which delivers
    /// with `deliver`.
    async fn send_inline(
        &self,
        deliver: &courier_core::usecases::deliver::Deliverer<'_>,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> aws_lambda_events::apigw::ApiGatewayProxyResponse {
        let send = send_deps(&self.sessions, &self.messages);
        let handler = courier_lambda::inline::SendMessage {
            send: &send,
            sessions: &self.sessions,
            deliver,
            log: &self.messages,
        };
        courier_lambda::inline::handle(&handler, event).await
    }

    /// Frames posted to one connection, parsed.
    fn posted_to(&self, conn: &str) -> Vec<Value> {
        self.gateway
            .posted()
            .into_iter()
            .filter(|(c, _)| c.as_str() == conn)
            .map(|(_, f)| serde_json::from_str(&f).unwrap())
            .collect()
    }
}

/// A gateway whose every call fails (not with Gone): the management API is down.
struct BrokenGateway;

#[async_trait::async_trait]
impl courier_core::ports::ConnectionGateway for BrokenGateway {
    async fn post(
        &self,
        _: &ConnectionId,
        _: &str,
    ) -> Result<(), courier_core::ports::GatewayError> {
        Err(courier_core::error::PortError::backend("management API unavailable").into())
    }
    async fn close(&self, _: &ConnectionId) -> Result<(), courier_core::ports::GatewayError> {
        Err(courier_core::error::PortError::backend("management API unavailable").into())
    }
}

mod accounts;
mod backups;
mod devices;
mod fan_out;
mod media;
mod messages;
mod settings;
mod status;
