//! `deleteMessage` on in-memory ports: only the sender, only within 48 hours, the ciphertext and
//! the attachments' references gone, the members told live and on sync, never by push.

mod support;

use chrono::Duration;
use courier_core::chat::MessageKind;
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::rate_limit::{Rule, Throttle};
use courier_core::usecases::{delete_message, media, send_message};
use courier_core::{ErrorCode, SessionId};
use serde_json::{Value, json};
use support::{Wire, World, who};

impl World {
    async fn text(&self, from: &DeviceCredential, session: &str, cmid: &str) -> String {
        let sent = self.send_text(from, session, cmid, "secret").await.unwrap();
        sent["msgId"].as_str().unwrap().to_owned()
    }

    async fn delete(
        &self,
        by: &DeviceCredential,
        session: &str,
        msg_id: &str,
    ) -> Result<Value, courier_core::ApiError> {
        let p = DeleteMessageParams {
            session_id: session.into(),
            msg_id: msg_id.into(),
        };
        delete_message::delete_message(&self.delete_message_deps(), by, p)
            .await
            .map(|r| r.json())
    }
}

#[tokio::test]
async fn the_sender_deletes_for_everyone_and_members_see_a_tombstone_live_and_on_sync() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let kept = w.text(&da, &s, "c-1").await;
    let gone = w.text(&da, &s, "c-2").await;
    let b_phone = w.connect(&db, "cb1").await;
    // Bob's tablet is offline with a push token: it learns on sync, and is not woken.
    w.offline_with_push(&who(&b, "d_1b")).await;

    let reply = w.delete(&da, &s, &gone).await.unwrap();
    assert_eq!(reply, json!({"msgId": gone, "deleted": true}));

    let frames = w.frames_to(&b_phone);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["event"], "messageDeleted");
    assert_eq!(frames[0]["sessionId"], s);
    assert_eq!(frames[0]["msgId"], gone.as_str());
    assert_eq!(frames[0]["by"], a.to_string());
    assert!(w.push.sent().is_empty(), "a deletion wakes no phone");

    let read = w.read_all(&db, &s).await;
    assert_eq!(
        read.len(),
        3,
        "the two messages, then the deletion's record: {read:?}"
    );
    assert_eq!(read[0]["msgId"], kept.as_str());
    assert_eq!(
        read[0]["payload"], "secret",
        "the other message is untouched"
    );
    assert_eq!(read[1]["msgId"], gone.as_str());
    assert_eq!(read[1]["type"], "deleted");
    assert!(
        read[1].get("payload").is_none(),
        "no ciphertext left: {}",
        read[1]
    );
    assert_eq!(read[2]["type"], "system");
    let record: Value = serde_json::from_str(read[2]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(record["update"], "messageDeleted");
    assert_eq!(record["msgId"], gone.as_str());
}

#[tokio::test]
async fn only_its_sender_may_delete_and_only_within_48_hours() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let m = w.text(&da, &s, "c-1").await;

    let err = w.delete(&db, &s, &m).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden, "{err:?}");
    let outsider = w.user("+14155550102", "d_2").await;
    let err = w.delete(&who(&outsider, "d_2"), &s, &m).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "a non-member learns nothing");
    let err = w.delete(&da, &s, &format!("{s}.99")).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let err = w.delete(&da, &s, "nonsense").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(w.read_all(&db, &s).await[0]["payload"], "secret");

    w.clock.advance(Duration::hours(48) + Duration::seconds(1));
    let err = w.delete(&da, &s, &m).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden, "{err:?}");
    let read = w.read_all(&db, &s).await;
    assert_eq!(read.len(), 1, "nothing written");
    assert_eq!(read[0]["payload"], "secret", "nothing lost");
}

#[tokio::test]
async fn deleting_again_answers_the_same_and_records_the_deletion_once() {
    let (w, a, b, s) = World::two().await;
    let da = who(&a, "d_0");
    let m = w.text(&da, &s, "c-1").await;
    let first = w.delete(&da, &s, &m).await.unwrap();
    // Even after the 48 hours: it is already gone.
    w.clock.advance(Duration::days(3));
    assert_eq!(w.delete(&da, &s, &m).await.unwrap(), first);
    let read = w.read_all(&who(&b, "d_1"), &s).await;
    assert_eq!(read.len(), 2, "{read:?}");
    // A record cannot be deleted, and neither can the deletion's.
    let err = w
        .delete(&da, &s, read[1]["msgId"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Forbidden);
}

#[tokio::test]
async fn the_attachments_go_with_the_message() {
    let (w, a, b, s) = World::two().await;
    let (da, db) = (who(&a, "d_0"), who(&b, "d_1"));
    let media_deps = media::Deps {
        media: &w.media,
        objects: &w.objects,
        sessions: Some(&w.sessions),
        statuses: None,
        clock: &w.clock,
        upload_quota: None,
    };
    let up = media::create_upload(
        &media_deps,
        &da,
        CreateMediaUploadParams {
            content_type: "image/jpeg".into(),
            size: 10,
        },
    )
    .await
    .unwrap();
    w.objects
        .put(&format!("media/{}", up.media_id), vec![7; 10], "image/jpeg");
    let send = send_message::Deps {
        media: Some(media::AttachDeps {
            media: &w.media,
            objects: &w.objects,
        }),
        ..w.send_deps()
    };
    let p: SendMessageParams = serde_json::from_value(json!({"sessionId": s, "clientMsgId": "c-1",
        "type": "media", "payload": "key-and-caption", "attachments": [up.media_id]}))
    .unwrap();
    let m = send_message::send_message(&send, &da, p)
        .await
        .unwrap()
        .msg_id;
    let download = |by: DeviceCredential| {
        let deps = &media_deps;
        let id = up.media_id.clone();
        async move { media::get_download(deps, &by, GetMediaDownloadParams { media_id: id }).await }
    };
    download(db.clone())
        .await
        .expect("Bob may download what Alice sent him");

    w.delete(&da, &s, &m).await.unwrap();
    let err = download(db.clone()).await.unwrap_err();
    assert_eq!(
        err.code,
        ErrorCode::Forbidden,
        "no message lets Bob fetch it now: {err:?}"
    );
    let stored = w.messages.all(&SessionId::from_trusted(&s));
    assert_eq!(stored[0].kind, MessageKind::Deleted);
    assert!(stored[0].attachments.is_empty());
    assert!(stored[0].payload.is_empty());
}

#[tokio::test]
async fn deletions_are_rate_limited_per_device() {
    let (w, a, _b, s) = World::two().await;
    let da = who(&a, "d_0");
    let limiter = courier_core::memory::MemoryRateLimiter::default();
    let mut deps = w.delete_message_deps();
    deps.throttle = Some(Throttle {
        limiter: &limiter,
        rule: Rule::TokenBucket {
            burst: 2,
            interval_ms: 60_000,
        },
    });
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(w.text(&da, &s, &format!("c-{i}")).await);
    }
    for id in &ids[..2] {
        let p = DeleteMessageParams {
            session_id: s.clone(),
            msg_id: id.clone(),
        };
        delete_message::delete_message(&deps, &da, p).await.unwrap();
    }
    let p = DeleteMessageParams {
        session_id: s.clone(),
        msg_id: ids[2].clone(),
    };
    let err = delete_message::delete_message(&deps, &da, p)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::LimitExceeded);
    let stored = w.messages.all(&SessionId::from_trusted(&s));
    assert_eq!(stored[2].kind, MessageKind::Text, "the refused one is kept");
}
