//! `POST /v1/connect-tickets`: a browser cannot set headers on a WebSocket handshake, and a key
//! in the URL ends up in access logs, proxies and the browser's history. So it presents its key
//! here, in the `Authorization` header, and gets a ticket: random, stored only as a hash, good
//! for one `$connect` within a few seconds ([`TICKET_LIFETIME_SECS`]). The authorizer takes the
//! ticket (a conditional delete, so it opens one connection at most) and then checks that the
//! key it stands for is still live, so a device revoked meanwhile cannot connect with it.

use crate::clock::Clock;
use crate::error::ApiError;
use crate::ports::{ConnectTicketStore, CredentialStore};
use crate::protocol::ConnectTicketResponse;
use crate::rate_limit::Throttle;
use crate::secrets::ApiKey;
use crate::usecases::authorize::{Presented, authorize_connection, presented_key};

/// How long a ticket may wait for its `$connect`, unless configured otherwise: long enough for
/// a slow network's handshake, short enough that one copied from a log is stale.
pub const TICKET_LIFETIME_SECS: u64 = 30;

/// What `createConnectTicket` needs.
pub struct Deps<'a> {
    /// Where keys are looked up.
    pub credentials: &'a dyn CredentialStore,
    /// Where tickets are kept.
    pub tickets: &'a dyn ConnectTicketStore,
    /// The clock (a manual one in tests, to move time).
    pub clock: &'a dyn Clock,
    /// The failed-connection limit, shared with `$connect` (`None`: unlimited): a wrong key here
    /// counts as a failed connection, so this is no way around the lockout to try keys.
    pub failures: Option<Throttle<'a>>,
    /// How long a ticket lives ([`TICKET_LIFETIME_SECS`] by default).
    pub lifetime_secs: u64,
}

/// A ticket for the device whose key is in `authorization` (`Bearer <key>`); `UNAUTHORIZED` for
/// a missing, unknown or revoked key, `LIMIT_EXCEEDED` while the address and key prefix are
/// locked out.
#[tracing::instrument(skip_all)]
pub async fn create(
    deps: &Deps<'_>,
    authorization: Option<&str>,
    source_ip: Option<&str>,
) -> Result<ConnectTicketResponse, ApiError> {
    let now = deps.clock.now();
    let key = presented_key(authorization);
    let key_hash = key.as_ref().map(ApiKey::hash);
    let who = authorize_connection(
        deps.credentials,
        None,
        key.map(Presented::Key),
        source_ip,
        deps.failures.as_ref(),
        now,
    )
    .await?;
    let key_hash = key_hash.expect("a device was found, so a key was presented");
    let ticket = ApiKey::generate_ticket();
    let lifetime = chrono::Duration::seconds(deps.lifetime_secs as i64);
    deps.tickets
        .put_ticket(&ticket.hash(), &key_hash, now + lifetime)
        .await?;
    tracing::info!(user = %who.user_id.pseudonym(), device = %who.device_id.pseudonym(), "connect ticket issued");
    Ok(ConnectTicketResponse {
        ticket: ticket.expose().to_owned(),
        expires_in_seconds: deps.lifetime_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::error::ErrorCode;
    use crate::ids::{DeviceId, UserId};
    use crate::memory::{MemoryAccounts, MemoryConnectTickets};
    use crate::phone::PhoneNumber;
    use crate::ports::{AccountStore, Device, DeviceCredential, User};
    use crate::protocol::Platform;
    use crate::usecases::authorize::presented_ticket;
    use chrono::{TimeZone, Utc};

    #[tokio::test]
    async fn a_ticket_needs_a_live_key_and_opens_one_connection_before_it_expires() {
        let accounts = MemoryAccounts::default();
        let tickets = MemoryConnectTickets::default();
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap());
        let key = ApiKey::generate();
        let user = User {
            user_id: UserId::generate(),
            phone: PhoneNumber::parse("+14155550100").unwrap(),
            created_at: clock.now(),
        };
        let device = Device {
            user_id: user.user_id.clone(),
            device_id: DeviceId::generate(),
            name: "phone".into(),
            platform: Platform::Ios,
            primary: true,
            key_hash: key.hash(),
            created_at: clock.now(),
        };
        accounts.create_account(&user, &device).await.unwrap();
        let who = DeviceCredential {
            user_id: user.user_id.clone(),
            device_id: device.device_id.clone(),
        };
        let deps = Deps {
            credentials: &accounts,
            tickets: &tickets,
            clock: &clock,
            failures: None,
            lifetime_secs: 30,
        };
        let bearer = format!("Bearer {}", key.expose());
        let connect = |t: &str| {
            let (accounts, tickets, now) = (&accounts, &tickets, clock.now());
            let presented = presented_ticket(Some(t)).map(Presented::Ticket);
            async move {
                authorize_connection(accounts, Some(tickets), presented, None, None, now).await
            }
        };

        let t = create(&deps, Some(&bearer), None).await.unwrap();
        assert!(t.ticket.starts_with("ct_"));
        assert_eq!(t.expires_in_seconds, 30);
        assert_eq!(connect(&t.ticket).await.unwrap(), who);
        let e = connect(&t.ticket).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "used once");

        let late = create(&deps, Some(&bearer), None).await.unwrap();
        clock.advance(chrono::Duration::seconds(30));
        let e = connect(&late.ticket).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unauthorized, "expired");

        for bad in [None, Some("Bearer ck_wrong"), Some(key.expose())] {
            let e = create(&deps, bad, None).await.unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthorized);
        }
    }
}
