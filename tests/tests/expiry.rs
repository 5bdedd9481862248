//! Code expiry, end to end, on a local cloud of its own started with a 3-second code lifetime
//! (the template parameter `VerificationCodeTtlSeconds`; production uses 900).

use courier_core::ErrorCode;
use courier_core::protocol::{DeviceInfo, Platform};
use courier_tests::{TestCloud, fresh_phone};
use std::time::Duration;

#[tokio::test]
async fn an_expired_code_is_refused_and_a_new_one_works() {
    let cloud = TestCloud::start(&["VerificationCodeTtlSeconds=3"]).expect("local cloud");
    let phone = fresh_phone();
    let reply = cloud.accounts().register(&phone).await.unwrap();
    assert_eq!(reply.expires_in_seconds, 3);
    let code = cloud.code_for(&phone).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let device = || DeviceInfo {
        name: "late".into(),
        platform: Platform::Cli,
    };
    let err = cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Expired));

    // Asking again sends a fresh code that works (within its own lifetime).
    cloud.accounts().register(&phone).await.unwrap();
    let code = cloud.code_for(&phone).await.unwrap();
    cloud
        .accounts()
        .verify(&phone, &code, device())
        .await
        .expect("the new code is accepted");
}
