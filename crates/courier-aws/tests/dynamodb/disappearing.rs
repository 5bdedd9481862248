//! Disappearing messages over DynamoDB Local: the timer and the change's record written
//! together, `expiresAt` and `ttl` on the messages that follow, the head item never read as a
//! message, and the floor that keeps numbers from being used again once DynamoDB's TTL has
//! removed a session's newest messages.

use crate::messages::{client_msg_id, draft, fixture, id, new, now, session};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use courier_core::UserId;
use courier_core::chat::{Draft, MessageKind, Tail};
use courier_core::ports::MessageStore;

fn record(by: &UserId) -> Draft {
    Draft {
        kind: MessageKind::System,
        payload: r#"{"update":"disappearingTimer","seconds":86400,"by":"x"}"#.into(),
        ..draft(by, &client_msg_id(), "")
    }
}

fn disappearing(by: &UserId, payload: &str) -> Draft {
    Draft {
        disappears: true,
        ..draft(by, &client_msg_id(), payload)
    }
}

#[tokio::test]
async fn messages_after_the_timer_change_carry_their_expiry_and_a_ttl() {
    let f = fixture().await;
    let s = session();
    let alice = UserId::generate();
    let at = now();
    let before = new(f
        .store
        .append(&s, &disappearing(&alice, "before"), at)
        .await
        .unwrap());
    assert_eq!(before.expires_at, None, "no timer yet");

    let rec = f
        .store
        .set_timer(&s, &record(&alice), 86_400, at)
        .await
        .unwrap();
    assert_eq!(rec.seq, 2);
    assert_eq!(
        f.store.tail(&s).await.unwrap(),
        Tail {
            seq: 2,
            timer: 86_400
        }
    );

    let after = new(f
        .store
        .append(&s, &disappearing(&alice, "after"), at)
        .await
        .unwrap());
    let expected = courier_core::chat::timestamp(at + Duration::seconds(86_400));
    assert_eq!(after.expires_at.as_deref(), Some(expected.as_str()));
    // What does not disappear (a handshake, a record: `disappears: false`) gets no expiry.
    let kept = new(f
        .store
        .append(&s, &draft(&alice, &client_msg_id(), "hs"), at)
        .await
        .unwrap());
    assert_eq!(kept.expires_at, None);

    let items = f.message_items().await;
    let ttl_of = |seq: u64| {
        items
            .iter()
            .find(|i| i.get("seq") == Some(&AttributeValue::N(seq.to_string())))
            .and_then(|i| i.get("ttl").cloned())
    };
    assert_eq!(
        ttl_of(after.seq),
        Some(AttributeValue::N((at.timestamp() + 86_400).to_string())),
        "DynamoDB's TTL reads epoch seconds"
    );
    assert_eq!(ttl_of(before.seq), None);
    assert_eq!(ttl_of(rec.seq), None);
    // Read back as stored; the head item (seq 0) is never a message.
    assert_eq!(
        f.store.get(&id(&s, after.seq)).await.unwrap(),
        Some(after.clone())
    );
    assert_eq!(f.store.get(&id(&s, 0)).await.unwrap(), None);
    let (page, _) = f.store.after(&s, 0, 10).await.unwrap();
    assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);

    // Off again: what follows keeps.
    f.store.set_timer(&s, &record(&alice), 0, at).await.unwrap();
    let last = new(f
        .store
        .append(&s, &disappearing(&alice, "last"), at)
        .await
        .unwrap());
    assert_eq!(last.expires_at, None);
}

#[tokio::test]
async fn the_floor_keeps_numbers_from_coming_back_after_the_ttl_removed_the_newest() {
    let f = fixture().await;
    let s = session();
    let alice = UserId::generate();
    let at = now();
    f.store
        .set_timer(&s, &record(&alice), 86_400, at)
        .await
        .unwrap();
    let mut last = 0;
    for i in 0..3 {
        let m = new(f
            .store
            .append(&s, &disappearing(&alice, &format!("m{i}")), at)
            .await
            .unwrap());
        last = m.seq;
    }
    // The stream consumer keeps the floor; a redelivered (lower) record changes nothing.
    f.store.keep_floor(&s, last).await.unwrap();
    f.store.keep_floor(&s, last - 1).await.unwrap();
    // DynamoDB's TTL removes the three (done here by hand: the TTL would take days).
    for seq in last - 2..=last {
        f.client
            .delete_item()
            .table_name(&f.messages_table)
            .key("sessionId", AttributeValue::S(s.to_string()))
            .key("seq", AttributeValue::N(seq.to_string()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        f.store.last(&s).await.unwrap().unwrap().seq,
        1,
        "only the record is left"
    );
    assert_eq!(
        f.store.tail(&s).await.unwrap().seq,
        last,
        "but the floor holds"
    );
    let next = new(f
        .store
        .append(&s, &draft(&alice, &client_msg_id(), "next"), at)
        .await
        .unwrap());
    assert_eq!(
        next.seq,
        last + 1,
        "a new number, not one members read past"
    );
}
