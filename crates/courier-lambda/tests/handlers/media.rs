//! `createMediaUpload`.

use super::*;

#[tokio::test]
async fn create_media_upload_replies_with_a_presigned_put_and_refuses_17_mib() {
    use courier_core::media::{MediaId, MediaStore, MemoryMedia};
    use courier_core::usecases::media;
    let (store, objects, sessions) = (
        MemoryMedia::default(),
        MemoryObjects::default(),
        MemorySessions::default(),
    );
    let deps = media::Deps {
        media: &store,
        objects: &objects,
        sessions: Some(&sessions),
        statuses: None,
        clock: &SystemClock,
        upload_quota: None,
    };
    let deps = &deps;
    let event = ws_event("create-media-upload.json");
    let resp = routes::action("createMediaUpload", &event, |who, p| async move {
        media::create_upload(deps, &who, p).await
    })
    .await;
    let f = frame(&resp);
    assert_eq!(f["requestId"], "r7");
    assert_eq!(f["ok"], true, "{f}");
    let id = MediaId::parse(f["result"]["mediaId"].as_str().unwrap()).expect("a media id");
    assert_eq!(f["result"]["uploadHeaders"]["content-type"], "image/jpeg");
    assert_eq!(f["result"]["uploadHeaders"]["content-length"], "2097152");
    assert!(
        f["result"]["uploadUrl"]
            .as_str()
            .unwrap()
            .ends_with(&id.object_key())
    );
    let rec = store.get(&id).await.unwrap().unwrap();
    assert_eq!(rec.uploader, UserId::from_trusted("u_test"));
    assert_eq!(rec.size, 2_097_152);

    let mut big = ws_event("create-media-upload.json");
    big.body = Some(
        r#"{"action":"createMediaUpload","requestId":"r8","contentType":"video/mp4","size":17825792}"#
            .into(),
    );
    let f = frame(
        &routes::action("createMediaUpload", &big, |who, p| async move {
            media::create_upload(deps, &who, p).await
        })
        .await,
    );
    assert_eq!(f["requestId"], "r8");
    assert_eq!(f["error"]["code"], "PAYLOAD_TOO_LARGE");
    let mut bad = ws_event("create-media-upload.json");
    bad.body = Some(r#"{"action":"createMediaUpload","requestId":"r9","size":"big"}"#.into());
    let f = frame(
        &routes::action("createMediaUpload", &bad, |who, p| async move {
            media::create_upload(deps, &who, p).await
        })
        .await,
    );
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
}
