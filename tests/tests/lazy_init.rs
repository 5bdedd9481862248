//! A function builds its handler (SDK clients, stores, settings) in its first invocation, not at
//! init (`courier_lambda::runtime::Lazy`). On a local cloud given a malformed setting
//! (`StatusTtlSeconds=soon`, which CloudFormation would refuse; the local cloud passes it through
//! to `postStatus`, the one function that reads it): init still succeeds, every request to it
//! fails with the gateway's internal error and stores nothing, the cause is logged once per
//! process, not once per request, and every other operation works.

use courier_tests::{TestCloud, WAIT, connect, eventually};
use serde_json::json;

#[tokio::test]
async fn a_handler_that_cannot_be_built_fails_only_its_own_operation() {
    let cloud = TestCloud::start(&["StatusTtlSeconds=soon"]).expect("a local cloud");
    let (alice, bob) = (cloud.sign_up().await, cloud.sign_up().await);
    let (a, b) = (connect(&cloud, &alice).await, connect(&cloud, &bob).await);

    for attempt in 1..=3 {
        let err = a
            .request_with_timeout("postStatus", json!({ "payload": "sunset" }), WAIT)
            .await
            .expect_err("postStatus cannot be served");
        match &err {
            courier_client::ClientError::Api(d) => {
                assert_eq!(
                    d.code,
                    courier_core::ErrorCode::Internal,
                    "attempt {attempt}: {err}"
                )
            }
            other => {
                panic!("attempt {attempt}: expected the gateway's internal error, got {other}")
            }
        }
    }
    // viewStatus, which gets no TTL setting, is served, and shows nothing posted.
    let seen = b
        .request("viewStatus", json!({ "userId": alice.user_id }))
        .await
        .expect("viewStatus is served");
    assert_eq!(seen["statuses"], json!([]));
    let statuses = cloud
        .dynamodb()
        .scan()
        .table_name(cloud.table("StatusTable"))
        .send()
        .await
        .unwrap();
    assert_eq!(statuses.count(), 0, "a failed postStatus stores nothing");

    // The rest of the service is unaffected.
    let chat = a
        .initiate_direct_chat(&bob.user_id, None)
        .await
        .expect("initiateDirectChatSession is served")
        .session_id;
    a.request(
        "sendMessage",
        json!({"sessionId": chat, "clientMsgId": "m1", "type": "text", "payload": "hi"}),
    )
    .await
    .expect("messaging works");
    let delivered = courier_tests::next(&b, "message").await;
    assert_eq!(delivered["message"]["payload"], "hi");

    // The cause is in the function's log, once per process rather than once per request. The
    // process wrote it before its first error reply; wait for the log to show it.
    let logs = cloud.state_dir.as_ref().unwrap().join("logs");
    let causes = |function: &str| -> Vec<String> {
        std::fs::read_to_string(logs.join(format!("{function}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("could not build its handler"))
            .map(str::to_owned)
            .collect()
    };
    eventually("the cause in PostStatusFunction's log", WAIT, async || {
        (!causes("PostStatusFunction").is_empty()).then_some(())
    })
    .await;
    let post_status = causes("PostStatusFunction");
    assert_eq!(
        post_status.len(),
        1,
        "three failed requests, one process: {post_status:#?}"
    );
    assert!(
        post_status[0].contains(r#"STATUS_TTL_SECS must be a number of seconds, got \"soon\""#),
        "{}",
        post_status[0]
    );
    assert!(causes("ViewStatusFunction").is_empty());
    assert!(causes("SendMessageFunction").is_empty());
}
