//! Media use cases on in-memory ports: upload limits and checks, who may download, attaching
//! media to a message (only your own, only once uploaded with its declared size).

mod support;

use chrono::{TimeZone, Utc};
use courier_core::clock::Clock;
use courier_core::media::{
    MAX_MEDIA_BYTES, MediaId, MediaStore, STATUS_MEDIA_OBJECT_DAYS, STATUS_RECORD_GRACE_SECS,
    TAG_ATTACHED, TAG_KEY, TAG_STATUS, TAG_UNATTACHED, UNATTACHED_RECORD_SECS,
};
use courier_core::ports::*;
use courier_core::protocol::*;
use courier_core::usecases::{media, send_message};
use courier_core::{DeviceId, ErrorCode, SessionId, UserId};
use serde_json::Value;
use support::{Wire, World};

/// The shared world in which Alice and Bob share a direct chat; Carol is in none.
struct Scene {
    world: World,
    alice: UserId,
    bob: UserId,
    carol: UserId,
    chat: SessionId,
}

/// The scene is the world with three people in it: its stores and clock are the world's.
impl std::ops::Deref for Scene {
    type Target = World;
    fn deref(&self) -> &World {
        &self.world
    }
}

fn who(u: &UserId) -> DeviceCredential {
    DeviceCredential {
        user_id: u.clone(),
        device_id: DeviceId::from_trusted("d_1"),
    }
}

impl Scene {
    async fn new() -> Self {
        let (alice, bob, carol) = (UserId::generate(), UserId::generate(), UserId::generate());
        let w = Scene {
            world: World::at(Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()),
            chat: SessionId::direct(&alice, &bob),
            alice,
            bob,
            carol,
        };
        w.sessions
            .create_direct(&w.chat, &w.alice, &w.bob, Utc::now())
            .await
            .unwrap();
        w
    }

    fn deps(&self) -> media::Deps<'_> {
        media::Deps {
            media: &self.media,
            objects: &self.objects,
            sessions: Some(&self.sessions),
            statuses: None,
            clock: &self.clock,
            upload_quota: None,
        }
    }

    /// Sending that attaches media.
    fn attaching_send_deps(&self) -> send_message::Deps<'_> {
        send_message::Deps {
            media: Some(media::AttachDeps {
                media: &self.media,
                objects: &self.objects,
            }),
            ..self.send_deps()
        }
    }

    async fn create(&self, u: &UserId, ct: &str, size: u64) -> Result<Value, ErrorCode> {
        media::create_upload(
            &self.deps(),
            &who(u),
            CreateMediaUploadParams {
                content_type: ct.into(),
                size,
            },
        )
        .await
        .map_err(|e| e.code)
        .map(|r| r.json())
    }

    /// Creates an upload for `u` and stores `size` bytes under it, as the client would.
    async fn uploaded(&self, u: &UserId, size: usize) -> String {
        let r = self
            .create(u, "application/octet-stream", size as u64)
            .await
            .unwrap();
        let id = r["mediaId"].as_str().unwrap().to_owned();
        let key = format!("media/{id}");
        self.objects
            .put(&key, vec![7; size], "application/octet-stream");
        self.objects
            .set_tags(&key, &[(TAG_KEY, TAG_UNATTACHED)])
            .await
            .unwrap();
        id
    }

    /// Alice's group `id`, "trip", of `members`.
    async fn group(&self, id: &str, members: &[(UserId, courier_core::chat::Role)]) -> SessionId {
        let group = SessionId::from_trusted(id);
        self.sessions
            .create_group(
                &Group {
                    session_id: group.clone(),
                    name: "trip".into(),
                    description: String::new(),
                    created_by: self.alice.clone(),
                    created_at: Utc::now(),
                    member_count: members.len() as u32,
                },
                members,
            )
            .await
            .unwrap();
        group
    }

    async fn download(&self, u: &UserId, id: &str) -> Result<Value, ErrorCode> {
        media::get_download(
            &self.deps(),
            &who(u),
            GetMediaDownloadParams {
                media_id: id.into(),
            },
        )
        .await
        .map_err(|e| e.code)
        .map(|r| r.json())
    }

    async fn send(&self, u: &UserId, attachments: Vec<String>) -> Result<Value, ErrorCode> {
        send_message::send_message(
            &self.attaching_send_deps(),
            &who(u),
            SendMessageParams {
                session_id: self.chat.to_string(),
                client_msg_id: uuid::Uuid::new_v4().to_string(),
                kind: "media".into(),
                payload: "<ciphertext>".into(),
                attachments,
            },
        )
        .await
        .map_err(|e| e.code)
        .map(|r| r.json())
    }
}

#[tokio::test]
async fn an_upload_is_bound_to_its_size_and_type_and_tagged_unattached() {
    let w = Scene::new().await;
    let r = w.create(&w.alice, "image/jpeg", 1234).await.unwrap();
    let id = MediaId::parse(r["mediaId"].as_str().unwrap()).expect("a media id");
    assert_eq!(r["uploadMethod"], "PUT");
    assert_eq!(r["uploadUrl"], format!("memory://media/{id}"));
    assert_eq!(r["expiresInSeconds"], 900);
    assert_eq!(r["uploadHeaders"]["content-type"], "image/jpeg");
    assert_eq!(r["uploadHeaders"]["content-length"], "1234");
    assert_eq!(
        r["uploadHeaders"]["x-amz-tagging"],
        "courier-media=unattached"
    );
    let rec = w.media.get(&id).await.unwrap().unwrap();
    assert_eq!((rec.uploader, rec.size), (w.alice.clone(), 1234));
    assert_eq!(rec.content_type, "image/jpeg");
}

#[tokio::test]
async fn sizes_and_content_types_are_checked() {
    let w = Scene::new().await;
    assert!(
        w.create(&w.alice, "video/mp4", MAX_MEDIA_BYTES)
            .await
            .is_ok()
    );
    assert!(w.create(&w.alice, "application/pdf", 1).await.is_ok());
    assert!(
        w.create(&w.alice, "text/plain; charset=utf-8", 10)
            .await
            .is_ok()
    );
    assert_eq!(
        w.create(&w.alice, "video/mp4", MAX_MEDIA_BYTES + 1).await,
        Err(ErrorCode::PayloadTooLarge)
    );
    assert_eq!(
        w.create(&w.alice, "video/mp4", 17 * 1024 * 1024).await,
        Err(ErrorCode::PayloadTooLarge)
    );
    assert_eq!(
        w.create(&w.alice, "video/mp4", 0).await,
        Err(ErrorCode::BadRequest)
    );
    let long = format!("image/{}", "x".repeat(100));
    for bad in [
        "",
        "jpeg",
        "image/",
        "/jpeg",
        "image/jpeg\r\nx: y",
        "imäge/png",
        &long,
    ] {
        assert_eq!(
            w.create(&w.alice, bad, 10).await,
            Err(ErrorCode::BadRequest),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn only_the_uploader_and_members_of_a_chat_it_was_sent_to_may_download() {
    let w = Scene::new().await;
    let id = w.uploaded(&w.alice, 100).await;
    // Before it is sent: only Alice.
    let r = w.download(&w.alice, &id).await.unwrap();
    assert_eq!(r["downloadUrl"], format!("memory://media/{id}"));
    assert_eq!(r["size"], 100);
    assert_eq!(w.download(&w.bob, &id).await, Err(ErrorCode::Forbidden));
    // Sent to the chat with Bob: Bob too, Carol never.
    w.send(&w.alice, vec![id.clone()]).await.unwrap();
    assert!(w.download(&w.bob, &id).await.is_ok());
    assert_eq!(w.download(&w.carol, &id).await, Err(ErrorCode::Forbidden));
    // Unknown or malformed ids.
    let unknown = MediaId::generate().to_string();
    assert_eq!(
        w.download(&w.alice, &unknown).await,
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        w.download(&w.alice, "m_nope").await,
        Err(ErrorCode::BadRequest)
    );
}

#[tokio::test]
async fn a_download_of_an_upload_that_never_happened_is_not_found() {
    let w = Scene::new().await;
    let r = w.create(&w.alice, "image/png", 10).await.unwrap();
    let id = r["mediaId"].as_str().unwrap();
    assert_eq!(w.download(&w.alice, id).await, Err(ErrorCode::NotFound));
}

#[tokio::test]
async fn sending_attaches_and_tags_the_object_and_a_retry_is_harmless() {
    let w = Scene::new().await;
    let id = w.uploaded(&w.alice, 50).await;
    let key = format!("media/{id}");
    assert_eq!(
        w.objects.get(&key).unwrap().tags,
        vec![(TAG_KEY.to_owned(), TAG_UNATTACHED.to_owned())]
    );
    let p = SendMessageParams {
        session_id: w.chat.to_string(),
        client_msg_id: "c-1".into(),
        kind: "media".into(),
        payload: "<ciphertext>".into(),
        attachments: vec![id.clone()],
    };
    let first = send_message::send_message(&w.attaching_send_deps(), &who(&w.alice), p.clone())
        .await
        .unwrap();
    let again = send_message::send_message(&w.attaching_send_deps(), &who(&w.alice), p)
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(
        w.objects.get(&key).unwrap().tags,
        vec![(TAG_KEY.to_owned(), TAG_ATTACHED.to_owned())]
    );
    let refs = w.media.refs(&MediaId::parse(&id).unwrap()).await.unwrap();
    assert_eq!(refs.len(), 1);
    let (page, _) = w.messages.after(&w.chat, 0, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].attachments, vec![id]);
}

#[tokio::test]
async fn attachments_must_be_your_own_uploaded_media() {
    let w = Scene::new().await;
    // Bob's media, sent by Alice: FORBIDDEN, and Carol still cannot read it.
    let bobs = w.uploaded(&w.bob, 10).await;
    assert_eq!(
        w.send(&w.alice, vec![bobs.clone()]).await,
        Err(ErrorCode::Forbidden)
    );
    // Unknown, malformed, repeated, never uploaded, wrong size.
    let unknown = MediaId::generate().to_string();
    assert_eq!(
        w.send(&w.alice, vec![unknown]).await,
        Err(ErrorCode::NotFound)
    );
    assert_eq!(
        w.send(&w.alice, vec!["x".into()]).await,
        Err(ErrorCode::BadRequest)
    );
    let mine = w.uploaded(&w.alice, 10).await;
    assert_eq!(
        w.send(&w.alice, vec![mine.clone(), mine.clone()]).await,
        Err(ErrorCode::BadRequest)
    );
    let r = w.create(&w.alice, "image/png", 10).await.unwrap();
    let missing = r["mediaId"].as_str().unwrap().to_owned();
    assert_eq!(
        w.send(&w.alice, vec![missing]).await,
        Err(ErrorCode::BadRequest)
    );
    let r = w.create(&w.alice, "image/png", 10).await.unwrap();
    let short = r["mediaId"].as_str().unwrap().to_owned();
    w.objects
        .put(&format!("media/{short}"), vec![1; 9], "image/png");
    assert_eq!(
        w.send(&w.alice, vec![short]).await,
        Err(ErrorCode::BadRequest)
    );
    // Nothing was stored by the refused sends.
    let (page, _) = w.messages.after(&w.chat, 0, 10).await.unwrap();
    assert!(page.is_empty());
    // Carol, not a member, cannot attach her own media to the chat either (NOT_FOUND: a
    // non-member is answered as for a session that does not exist, issue 21 item 6).
    let carols = w.uploaded(&w.carol, 10).await;
    assert_eq!(
        w.send(&w.carol, vec![carols]).await,
        Err(ErrorCode::NotFound)
    );
    assert_eq!(w.send(&w.alice, vec![mine]).await.map(|_| ()), Ok(()));
}

#[tokio::test]
async fn a_send_without_media_wiring_refuses_attachments() {
    let w = Scene::new().await;
    let id = w.uploaded(&w.alice, 10).await;
    let mut deps = w.attaching_send_deps();
    deps.media = None;
    let r = send_message::send_message(
        &deps,
        &who(&w.alice),
        SendMessageParams {
            session_id: w.chat.to_string(),
            client_msg_id: "c-1".into(),
            kind: "media".into(),
            payload: "x".into(),
            attachments: vec![id],
        },
    )
    .await;
    assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest);
}

#[tokio::test]
async fn a_group_member_may_download_until_removed() {
    use courier_core::chat::Role;
    let w = Scene::new().await;
    let group = w
        .group(
            "g_media0test",
            &[
                (w.alice.clone(), Role::Admin),
                (w.carol.clone(), Role::Member),
            ],
        )
        .await;
    let id = w.uploaded(&w.alice, 10).await;
    send_message::send_message(
        &w.attaching_send_deps(),
        &who(&w.alice),
        SendMessageParams {
            session_id: group.to_string(),
            client_msg_id: "g-1".into(),
            kind: "media".into(),
            payload: "<ciphertext>".into(),
            attachments: vec![id.clone()],
        },
    )
    .await
    .unwrap();
    // Carol (in the group) may; Bob (only in the direct chat, where it was not sent) may not.
    assert!(w.download(&w.carol, &id).await.is_ok());
    assert_eq!(w.download(&w.bob, &id).await, Err(ErrorCode::Forbidden));
    // Membership is checked at each request: once removed, Carol is refused.
    assert!(w.sessions.remove_member(&group, &w.carol).await.unwrap());
    assert_eq!(w.download(&w.carol, &id).await, Err(ErrorCode::Forbidden));
}

#[tokio::test]
async fn a_late_joiner_may_download_only_media_sent_after_joining() {
    use courier_core::chat::Role;
    let w = Scene::new().await;
    let group = w
        .group("g_media1test", &[(w.alice.clone(), Role::Admin)])
        .await;
    let send = |id: String, cmid: &'static str| {
        let w = &w;
        let group = group.clone();
        async move {
            send_message::send_message(
                &w.attaching_send_deps(),
                &who(&w.alice),
                SendMessageParams {
                    session_id: group.to_string(),
                    client_msg_id: cmid.into(),
                    kind: "media".into(),
                    payload: "<ciphertext>".into(),
                    attachments: vec![id],
                },
            )
            .await
            .unwrap()
        }
    };
    let before = w.uploaded(&w.alice, 10).await;
    let reused = w.uploaded(&w.alice, 10).await;
    assert_eq!(send(before.clone(), "m-1").await.json()["seq"], 1);
    assert_eq!(send(reused.clone(), "m-2").await.json()["seq"], 2);
    // Carol joins at seq 2, as addUserToGroup records it: she reads from seq 3 on.
    w.sessions
        .add_member(&group, &w.carol, 2, 1024, Utc::now())
        .await
        .unwrap();
    let after = w.uploaded(&w.alice, 10).await;
    send(after.clone(), "m-3").await;
    assert!(w.download(&w.carol, &after).await.is_ok());
    assert_eq!(
        w.download(&w.carol, &before).await,
        Err(ErrorCode::Forbidden),
        "media sent before Carol joined is not hers"
    );
    assert!(w.download(&w.alice, &before).await.is_ok(), "the uploader");
    // The same media sent again after she joined: that message is hers, so its media is too.
    assert_eq!(
        w.download(&w.carol, &reused).await,
        Err(ErrorCode::Forbidden)
    );
    send(reused.clone(), "m-4").await;
    assert!(w.download(&w.carol, &reused).await.is_ok());
}

#[tokio::test]
async fn media_on_a_status_is_for_those_who_may_see_the_live_status() {
    use courier_core::settings::{Audience, Settings};
    use courier_core::usecases::status;
    let w = Scene::new().await;
    let mut s = Settings::default();
    s.privacy.status = Audience::Contacts;
    w.settings.put_settings(&w.alice, &s).await.unwrap();
    w.settings
        .update_contacts(&w.alice, std::slice::from_ref(&w.bob), &[], Utc::now())
        .await
        .unwrap();
    let attach = media::AttachDeps {
        media: &w.media,
        objects: &w.objects,
    };
    let status_deps = status::Deps {
        statuses: Some(&w.statuses),
        settings: Some(&w.settings),
        deliver: None,
        media: Some(attach),
        clock: &w.clock,
        ttl_secs: 60,
        throttle: None,
    };
    let media_deps = media::Deps {
        statuses: Some(media::StatusLookup {
            statuses: &w.statuses,
            settings: &w.settings,
        }),
        ..w.deps()
    };
    let download = |u: UserId, id: String| {
        let deps = &media_deps;
        async move {
            media::get_download(deps, &who(&u), GetMediaDownloadParams { media_id: id })
                .await
                .map_err(|e| e.code)
        }
    };
    let post = |u: UserId, attachments: Vec<String>| {
        let deps = &status_deps;
        async move {
            status::post_status(
                deps,
                &who(&u),
                PostStatusParams {
                    payload: "ciphertext".into(),
                    attachments,
                },
            )
            .await
            .map_err(|e| e.code)
        }
    };

    // Only one's own uploaded media may go on a status.
    let bobs = w.uploaded(&w.bob, 10).await;
    assert_eq!(
        post(w.alice.clone(), vec![bobs]).await,
        Err(ErrorCode::Forbidden)
    );
    assert_eq!(
        post(w.alice.clone(), vec!["m_photo".into()]).await,
        Err(ErrorCode::BadRequest)
    );
    let id = w.uploaded(&w.alice, 100).await;
    assert_eq!(
        download(w.bob.clone(), id.clone()).await,
        Err(ErrorCode::Forbidden)
    );
    let posted_at = w.clock.now();
    post(w.alice.clone(), vec![id.clone()]).await.unwrap();
    let tag = |id: &str| w.objects.get(&format!("media/{id}")).unwrap().tags;
    assert_eq!(
        tag(&id),
        vec![(TAG_KEY.to_owned(), TAG_STATUS.to_owned())],
        "removed by ExpireStatusMedia once the status is long gone"
    );
    let parsed = MediaId::parse(&id).unwrap();
    // The record goes a day after the status, or when an unattached upload's would (two days
    // after the upload), whichever is later: a status never brings it forward.
    let uploaded_at = w.media.get(&parsed).await.unwrap().unwrap().created_at;
    let status_end = posted_at + chrono::Duration::seconds(60 + STATUS_RECORD_GRACE_SECS);
    let unattached_end = uploaded_at + chrono::Duration::seconds(UNATTACHED_RECORD_SECS);
    assert_eq!(
        w.media.kept_until(&parsed),
        Some(Some(status_end.max(unattached_end)))
    );
    // Bob (a contact) may download it while the status lives; Carol (no contact) may not.
    assert!(download(w.bob.clone(), id.clone()).await.is_ok());
    assert_eq!(
        download(w.carol.clone(), id.clone()).await,
        Err(ErrorCode::Forbidden)
    );
    // Privacy "nobody" applies at once.
    s.privacy.status = Audience::Nobody;
    w.settings.put_settings(&w.alice, &s).await.unwrap();
    assert_eq!(
        download(w.bob.clone(), id.clone()).await,
        Err(ErrorCode::Forbidden)
    );
    s.privacy.status = Audience::Contacts;
    w.settings.put_settings(&w.alice, &s).await.unwrap();
    // Once the status expired, nobody but the uploader.
    w.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(
        download(w.bob.clone(), id.clone()).await,
        Err(ErrorCode::Forbidden)
    );
    assert!(download(w.alice.clone(), id.clone()).await.is_ok());

    // Sent in a chat too: a message refers to it, so it is kept for good, and posting it on a
    // status again does not make it expire.
    w.send(&w.alice, vec![id.clone()]).await.unwrap();
    assert_eq!(
        tag(&id),
        vec![(TAG_KEY.to_owned(), TAG_ATTACHED.to_owned())]
    );
    assert_eq!(w.media.kept_until(&parsed), Some(None));
    post(w.alice.clone(), vec![id.clone()]).await.unwrap();
    assert_eq!(
        tag(&id),
        vec![(TAG_KEY.to_owned(), TAG_ATTACHED.to_owned())]
    );
    assert_eq!(w.media.kept_until(&parsed), Some(None));

    // Media only statuses used is removed 3 days after its upload: a status may not post it
    // once it would not outlive the status; media a message keeps may be posted at any age.
    let old = w.uploaded(&w.alice, 10).await;
    post(w.alice.clone(), vec![old.clone()]).await.unwrap();
    w.clock
        .advance(chrono::Duration::days(STATUS_MEDIA_OBJECT_DAYS) - chrono::Duration::seconds(30));
    assert_eq!(
        post(w.alice.clone(), vec![old.clone()]).await,
        Err(ErrorCode::BadRequest),
        "it would be removed before this status expires"
    );
    assert_eq!(tag(&old), vec![(TAG_KEY.to_owned(), TAG_STATUS.to_owned())]);
    post(w.alice.clone(), vec![id]).await.unwrap();
}

/// The lifecycle rule that removes status-only media and the core's idea of it agree: the rule
/// in template.yaml removes `status`-tagged media after [`STATUS_MEDIA_OBJECT_DAYS`], and the
/// longest status (`StatusTtlSeconds`' `MaxValue`) plus the day a status may attach an upload
/// after it was made ends before that.
#[test]
fn the_status_media_lifecycle_rule_matches_the_core() {
    let template = include_str!("../../../template.yaml");
    let after = |anchor: &str, key: &str| -> i64 {
        let from = template
            .find(anchor)
            .unwrap_or_else(|| panic!("{anchor} in template.yaml"));
        let rest = &template[from..];
        let at = rest
            .find(key)
            .unwrap_or_else(|| panic!("{key} after {anchor}"));
        rest[at + key.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        after("- Id: ExpireStatusMedia", "ExpirationInDays:"),
        STATUS_MEDIA_OBJECT_DAYS
    );
    assert!(
        template[template.find("- Id: ExpireStatusMedia").unwrap()..]
            .split("- Id:")
            .nth(1)
            .unwrap()
            .contains("Value: status")
    );
    let longest_status = after("StatusTtlSeconds:", "MaxValue:");
    assert!(longest_status + 86_400 <= STATUS_MEDIA_OBJECT_DAYS * 86_400);
}

/// One `createMediaUpload` of `size` bytes by `u` with `deps`.
async fn upload_with(
    deps: &media::Deps<'_>,
    u: &UserId,
    size: u64,
) -> Result<Value, courier_core::ApiError> {
    media::create_upload(
        deps,
        &who(u),
        CreateMediaUploadParams {
            content_type: "video/mp4".into(),
            size,
        },
    )
    .await
    .map(|r| r.json())
}

/// The storage-cost attack (issue 21 item 11): one user's uploads are counted in declared bytes
/// per UTC day, all of its devices together. Past the quota each is `LIMIT_EXCEEDED` with the
/// seconds left in the day; what is left may be used, others have their own, and a new day
/// starts afresh.
#[tokio::test]
async fn uploads_past_the_daily_byte_quota_are_refused_until_the_next_day() {
    use courier_core::rate_limit::{DAY_SECS, Quota, QuotaThrottle};
    let w = Scene::new().await;
    let deps = media::Deps {
        upload_quota: Some(QuotaThrottle {
            limiter: &w.limiter,
            quota: Quota {
                max: 2 * MAX_MEDIA_BYTES,
                window_secs: DAY_SECS,
            },
        }),
        ..w.deps()
    };
    upload_with(&deps, &w.alice, MAX_MEDIA_BYTES).await.unwrap();
    upload_with(&deps, &w.alice, MAX_MEDIA_BYTES - 1)
        .await
        .unwrap();
    let e = upload_with(&deps, &w.alice, 2).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e:?}");
    // The clock is at 12:00 UTC: the day ends in 12 hours.
    assert_eq!(e.retry_after_secs, Some(12 * 3600));
    // The refused request counted nothing: the last byte is still there.
    upload_with(&deps, &w.alice, 1).await.unwrap();
    assert_eq!(
        upload_with(&deps, &w.alice, 1).await.unwrap_err().code,
        ErrorCode::LimitExceeded
    );
    upload_with(&deps, &w.bob, MAX_MEDIA_BYTES).await.unwrap();
    w.clock.advance(chrono::Duration::hours(12));
    upload_with(&deps, &w.alice, MAX_MEDIA_BYTES).await.unwrap();
}
