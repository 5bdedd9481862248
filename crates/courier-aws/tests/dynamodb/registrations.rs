//! `DynamoRegistrations` over a `RegistrationsTable`: versioned (optimistic) writes and deletes,
//! faithful round-trips, and the TTL attribute that lets DynamoDB clean up stale codes.

use crate::support;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Timelike, Utc};
use courier_aws::dynamo::DynamoRegistrations;
use courier_core::PhoneNumber;
use courier_core::error::PortError;
use courier_core::ports::{PendingRegistration, RegistrationStore};
use courier_core::secrets::VerificationCode;

pub(crate) struct Fixture {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
    pub(crate) store: DynamoRegistrations,
}

pub(crate) async fn fixture() -> Fixture {
    let client = support::client();
    let table = support::create_table(&client, "RegistrationsTable").await;
    let store = DynamoRegistrations::new(client.clone(), table.clone());
    Fixture {
        client,
        table,
        store,
    }
}

pub(crate) fn phone(e164: &str) -> PhoneNumber {
    PhoneNumber::parse(e164).unwrap()
}

/// Now, with a sub-second part that a lossy encoding would drop.
fn now() -> DateTime<Utc> {
    Utc::now().with_nanosecond(987_654_321).unwrap()
}

/// A fresh code sent just now, valid for 15 minutes.
pub(crate) fn registration(phone: &PhoneNumber, version: u64) -> PendingRegistration {
    let sent = now();
    PendingRegistration {
        phone: phone.clone(),
        code: VerificationCode::generate().hash(),
        expires_at: sent + Duration::minutes(15),
        failed_attempts: 0,
        sent_at: vec![sent],
        version,
    }
}

/// `p`'s registration created at version 1, then updated (a failed attempt) to version 2 with
/// version 1 expected: both versions.
async fn stored_at_version_two(
    f: &Fixture,
    p: &PhoneNumber,
) -> (PendingRegistration, PendingRegistration) {
    let v1 = registration(p, 1);
    f.store.put(&v1, None).await.unwrap();
    let v2 = PendingRegistration {
        failed_attempts: 1,
        version: 2,
        ..v1.clone()
    };
    f.store.put(&v2, Some(1)).await.unwrap();
    (v1, v2)
}

fn is_conflict<T: std::fmt::Debug>(result: &Result<T, PortError>) -> bool {
    matches!(result, Err(PortError::Conflict))
}

#[tokio::test]
async fn get_on_an_empty_table_is_none() {
    let f = fixture().await;
    assert_eq!(f.store.get(&phone("+14155550100")).await.unwrap(), None);
}

#[tokio::test]
async fn put_expecting_nothing_creates_once_then_conflicts() {
    let f = fixture().await;
    let p = phone("+14155550100");
    let first = registration(&p, 1);
    f.store.put(&first, None).await.unwrap();
    assert_eq!(f.store.get(&p).await.unwrap(), Some(first.clone()));

    let second = registration(&p, 1);
    let r = f.store.put(&second, None).await;
    assert!(is_conflict(&r), "second create: {r:?}");
    assert_eq!(
        f.store.get(&p).await.unwrap(),
        Some(first),
        "the losing write changed nothing"
    );

    // Another number is independent.
    let other = registration(&phone("+14155550101"), 1);
    f.store.put(&other, None).await.unwrap();
    assert_eq!(f.store.get(&other.phone).await.unwrap(), Some(other));
}

#[tokio::test]
async fn put_with_the_current_version_updates_and_with_a_stale_one_conflicts() {
    let f = fixture().await;
    let p = phone("+14155550100");
    let (v1, v2) = stored_at_version_two(&f, &p).await;
    assert_eq!(f.store.get(&p).await.unwrap(), Some(v2.clone()));

    // A writer that still holds version 1 loses, and so does one guessing a newer version.
    let stale = PendingRegistration {
        failed_attempts: 5,
        version: 2,
        ..v1.clone()
    };
    let r = f.store.put(&stale, Some(1)).await;
    assert!(is_conflict(&r), "stale version: {r:?}");
    let ahead = PendingRegistration {
        version: 4,
        ..v1.clone()
    };
    let r = f.store.put(&ahead, Some(3)).await;
    assert!(is_conflict(&r), "version that was never stored: {r:?}");
    // Expecting nothing when something is stored also loses.
    let r = f.store.put(&registration(&p, 1), None).await;
    assert!(is_conflict(&r), "create over an existing item: {r:?}");
    assert_eq!(f.store.get(&p).await.unwrap(), Some(v2));

    // Expecting a version when nothing is stored is a conflict, and creates nothing.
    let absent = phone("+14155550101");
    let r = f.store.put(&registration(&absent, 2), Some(1)).await;
    assert!(is_conflict(&r), "update of a missing item: {r:?}");
    assert_eq!(f.store.get(&absent).await.unwrap(), None);
}

#[tokio::test]
async fn delete_with_a_stale_version_conflicts_and_with_the_current_one_removes() {
    let f = fixture().await;
    let p = phone("+14155550100");
    let (_, v2) = stored_at_version_two(&f, &p).await;

    let r = f.store.delete(&p, 1).await;
    assert!(is_conflict(&r), "stale delete: {r:?}");
    assert_eq!(
        f.store.get(&p).await.unwrap(),
        Some(v2),
        "a stale delete keeps the item"
    );

    f.store.delete(&p, 2).await.unwrap();
    assert_eq!(f.store.get(&p).await.unwrap(), None);

    // The code is single use: deleting it again (or a number never registered) is a conflict.
    let r = f.store.delete(&p, 2).await;
    assert!(is_conflict(&r), "second delete: {r:?}");
    let r = f.store.delete(&phone("+14155550101"), 1).await;
    assert!(is_conflict(&r), "delete of a missing item: {r:?}");

    // Once deleted, the number can get a new code.
    f.store.put(&registration(&p, 1), None).await.unwrap();
}

#[tokio::test]
async fn round_trip_keeps_every_field() {
    let f = fixture().await;
    let sent = now();
    let reg = PendingRegistration {
        phone: phone("+442071838750"),
        code: VerificationCode::generate().hash(),
        expires_at: sent + Duration::minutes(15),
        failed_attempts: 3,
        sent_at: vec![
            sent - Duration::minutes(40),
            sent - Duration::minutes(7) + Duration::nanoseconds(1),
            sent,
        ],
        version: 42,
    };
    f.store.put(&reg, None).await.unwrap();
    let got = f.store.get(&reg.phone).await.unwrap().expect("stored");
    assert_eq!(got.code, reg.code, "code hash (salt and digest)");
    assert_eq!(got.expires_at, reg.expires_at, "expiry, to the nanosecond");
    assert_eq!(got.failed_attempts, 3);
    assert_eq!(got.sent_at, reg.sent_at, "send history, in order");
    assert_eq!(got.version, 42);
    assert_eq!(got, reg);

    // An empty send history round-trips too.
    let quiet = PendingRegistration {
        phone: phone("+14155550100"),
        sent_at: Vec::new(),
        ..reg
    };
    f.store.put(&quiet, None).await.unwrap();
    assert_eq!(f.store.get(&quiet.phone).await.unwrap(), Some(quiet));
}

/// The raw item's `ttl` (template.yaml's TTL attribute), as epoch seconds.
async fn stored_ttl(f: &Fixture, phone: &PhoneNumber) -> i64 {
    let out = f
        .client
        .get_item()
        .table_name(&f.table)
        .key("phone", AttributeValue::S(phone.as_str().to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let item = out.item.expect("the item is stored under its E.164 number");
    match item.get("ttl") {
        Some(AttributeValue::N(n)) => n.parse().unwrap_or_else(|e| panic!("ttl {n}: {e}")),
        other => panic!("ttl must be a number attribute, got {other:?} in {item:?}"),
    }
}

#[tokio::test]
async fn stored_item_has_a_numeric_ttl_at_or_after_the_expiry() {
    let f = fixture().await;
    let sent = now();
    let cases = [
        // The usual shape: one send, code valid for 15 minutes.
        registration(&phone("+14155550100"), 1),
        // A long-lived code.
        PendingRegistration {
            expires_at: sent + Duration::hours(6),
            ..registration(&phone("+14155550101"), 1)
        },
        // No send recorded.
        PendingRegistration {
            sent_at: Vec::new(),
            ..registration(&phone("+14155550102"), 1)
        },
        // Several sends, the latest last.
        PendingRegistration {
            sent_at: vec![sent - Duration::minutes(30), sent - Duration::minutes(2)],
            ..registration(&phone("+14155550103"), 1)
        },
    ];
    for reg in &cases {
        f.store.put(reg, None).await.unwrap();
        let ttl = stored_ttl(&f, &reg.phone).await;
        assert!(
            ttl >= reg.expires_at.timestamp(),
            "{}: ttl {ttl} is before the expiry {}",
            reg.phone,
            reg.expires_at.timestamp()
        );
        // DynamoDB TTL wants epoch seconds: milliseconds would never expire.
        assert!(
            ttl <= (reg.expires_at + Duration::days(1)).timestamp(),
            "{}: ttl {ttl} is not in epoch seconds near the expiry {}",
            reg.phone,
            reg.expires_at.timestamp()
        );
    }

    // An update moves the TTL with the new expiry.
    let first = &cases[0];
    let renewed = PendingRegistration {
        expires_at: first.expires_at + Duration::hours(2),
        version: 2,
        ..first.clone()
    };
    f.store.put(&renewed, Some(1)).await.unwrap();
    assert!(stored_ttl(&f, &renewed.phone).await >= renewed.expires_at.timestamp());
}
