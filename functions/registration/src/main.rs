//! The `registration` function (HTTP API): `registerAccount` texts a code, `validateAccount`
//! turns it into an account and a device key, `createConnectTicket` trades a key for a one-time
//! WebSocket ticket (Courier Web).

use courier_aws::config;
use courier_core::clock::SystemClock;
use courier_core::usecases::{connect_ticket, register_account, validate_account};
use courier_lambda::http;
use courier_lambda::serve;
use courier_lambda::stores::{Stores, leak, seconds};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    match serve::start()? {
        "registerAccount" => serve::http(register, http::register_account).await,
        "validateAccount" => serve::http(validate, http::validate_account).await,
        "createConnectTicket" => serve::http(ticket, http::create_connect_ticket).await,
        other => Err(serve::unknown("registration", other)),
    }
}

/// Codes by SMS behind the per-number, per-address and SMS-budget limits.
fn register(s: &Stores) -> Result<&'static register_account::Deps<'static>, Error> {
    let setting = |var| std::env::var(var).unwrap_or_default();
    Ok(leak(register_account::Deps {
        registrations: s.registrations()?,
        sms: s.sms(),
        clock: &SystemClock,
        code_lifetime_secs: seconds("CODE_TTL_SECS", register_account::CODE_LIFETIME_SECS)?,
        test_numbers: register_account::TestNumbers::from_config(
            &setting("TEST_PHONE_PREFIX"),
            &setting("TEST_PHONE_CODE"),
        )?,
        limits: Some(register_account::CodeLimits {
            per_phone: s.throttle(|l| l.codes_per_phone)?,
            per_ip: s.throttle(|l| l.codes_per_ip)?,
        }),
        sms_guard: Some(s.sms_guard()?),
    }))
}

/// A new account, or a re-registration that evicts the number's devices (and, after a
/// registration PIN reset, deletes the old account's data).
fn validate(s: &Stores) -> Result<&'static validate_account::Deps<'static>, Error> {
    let connections = s.connections()?;
    Ok(leak(validate_account::Deps {
        registrations: s.registrations()?,
        accounts: s.accounts()?,
        connections,
        gateway: s.gateway()?,
        keys: s.keys()?,
        queues: s.queues()?,
        clock: &SystemClock,
        data: s.account_data(connections)?,
    }))
}

/// Key lookups behind the failed-connection limit.
fn ticket(s: &Stores) -> Result<&'static connect_ticket::Deps<'static>, Error> {
    Ok(leak(connect_ticket::Deps {
        credentials: s.credentials()?,
        tickets: s.connect_tickets()?,
        clock: &SystemClock,
        failures: Some(s.throttle(|l| l.failed_connects)?),
        lifetime_secs: config::connect_ticket_lifetime_secs()?,
    }))
}
