//! Registration, verification, the authorizer, `$connect`/`$disconnect`, the default route, account deletion and device removal, and their limits.

use super::*;

#[tokio::test]
async fn register_then_validate_through_the_http_handlers() {
    let p = Ports::default();
    let resp =
        http::register_account(&p.register(), http_event("register-account.json", None)).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(body_json(&resp)["expiresInSeconds"], 900);
    let code = p.sms.last_code("+14155550100").unwrap();

    let body = format!(
        r#"{{"phone":"+14155550100","code":"{code}","device":{{"name":"Pixel 9","platform":"android"}}}}"#
    );
    let resp = http::validate_account(
        &p.validate(),
        http_event("validate-account.json", Some(&body)),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let creds = body_json(&resp);
    assert!(creds["apiKey"].as_str().unwrap().starts_with("ck_"));
    assert!(creds["userId"].as_str().unwrap().starts_with("u_"));
}

#[tokio::test]
async fn http_bad_input_gets_a_clear_error_and_stores_nothing() {
    let p = Ports::default();
    let cases: &[(&str, u16, &str)] = &[
        ("not json", 400, "BAD_REQUEST"),
        (r#"{"phone": 14155550100}"#, 400, "BAD_REQUEST"),
        (r#"{"phone": "555-0100"}"#, 400, "BAD_REQUEST"),
        (r#"{}"#, 400, "BAD_REQUEST"),
    ];
    for (body, status, code) in cases {
        let resp = http::register_account(
            &p.register(),
            http_event("register-account.json", Some(body)),
        )
        .await;
        assert_eq!(resp.status(), *status, "{body}");
        let v = body_json(&resp);
        assert_eq!(v["error"]["code"], *code, "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let big = format!(r#"{{"phone":"+14155550100","pad":"{}"}}"#, "x".repeat(5000));
    let resp = http::register_account(
        &p.register(),
        http_event("register-account.json", Some(&big)),
    )
    .await;
    assert_eq!(resp.status(), 413);
    assert_eq!(body_json(&resp)["error"]["code"], "PAYLOAD_TOO_LARGE");
    assert!(p.sms.sent().is_empty());

    // The fixture's code was never sent: nothing is pending for the number.
    let resp =
        http::validate_account(&p.validate(), http_event("validate-account.json", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(body_json(&resp)["error"]["code"], "NOT_FOUND");
    assert_eq!(p.accounts.live_keys(), 0);
}

#[tokio::test]
async fn too_many_codes_answer_429_with_retry_after() {
    let p = Ports::default();
    for _ in 0..3 {
        assert_eq!(
            http::register_account(&p.register(), http_event("register-account.json", None))
                .await
                .status(),
            202
        );
    }
    let resp =
        http::register_account(&p.register(), http_event("register-account.json", None)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(body_json(&resp)["error"]["code"], "LIMIT_EXCEEDED");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
}

#[tokio::test]
async fn the_authorizer_allows_a_live_key_in_the_header_or_a_ticket_in_the_query_and_refuses_others()
 {
    use courier_core::usecases::connect_ticket;
    let p = Ports::default();
    let (key, creds) = signed_up(&p).await;
    let tickets = courier_core::memory::MemoryConnectTickets::default();
    let ticket_deps = connect_ticket::Deps {
        credentials: &p.accounts,
        tickets: &tickets,
        clock: &SystemClock,
        failures: None,
        lifetime_secs: 30,
    };
    let ticket = connect_ticket::create(&ticket_deps, Some(&format!("Bearer {key}")), None)
        .await
        .unwrap()
        .ticket;
    let authorize = |event: ApiGatewayCustomAuthorizerRequestTypeRequest| {
        let (accounts, tickets) = (&p.accounts, &tickets);
        async move {
            authorizer::handle_limited(accounts, Some(tickets), None, &SystemClock, &event).await
        }
    };
    for (name, secret) in [
        ("authorizer-header.json", &key),
        ("authorizer-query.json", &ticket),
    ] {
        let policy = authorize(authorizer_event(name, secret)).await.unwrap();
        assert_eq!(policy["principalId"], creds.user_id.as_str());
        assert_eq!(policy["policyDocument"]["Statement"][0]["Effect"], "Allow");
        assert_eq!(policy["context"]["userId"], creds.user_id.as_str());
        assert_eq!(policy["context"]["deviceId"], creds.device_id.as_str());
    }
    // A key in the URL, as the `ticket` or as the old `token` parameter, opens nothing; nor does
    // a used ticket.
    let token: ApiGatewayCustomAuthorizerRequestTypeRequest = serde_json::from_str(
        &fixture("authorizer-query.json")
            .replace("k_test", &key)
            .replace("\"ticket\"", "\"token\""),
    )
    .unwrap();
    for event in [
        authorizer_event("authorizer-header.json", "ck_wrong"),
        authorizer_event("authorizer-missing.json", "x"),
        authorizer_event("authorizer-query.json", &ticket),
        authorizer_event("authorizer-query.json", &key),
        token,
    ] {
        let err = authorize(event).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "Unauthorized",
            "API Gateway answers 401 only for this exact message"
        );
    }
}

#[tokio::test]
async fn connect_and_disconnect_track_the_connection() {
    let p = Ports::default();
    let resp = routes::connect(
        &p.connections,
        &p.connections,
        &SystemClock,
        &ws_event("connect.json"),
    )
    .await;
    assert_eq!(resp.status_code, 200);
    assert!(resp.body.is_none());
    let user = UserId::from_trusted("u_test");
    // The connection marked the user active today: a second mark is not its first of the day.
    let again = p
        .connections
        .mark_active(&user, chrono::Utc::now().date_naive())
        .await
        .unwrap();
    assert!(!again.of_day && !again.of_month);
    let conns = p.connections.for_user(&user).await.unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].0.as_str(), "d_test");

    let resp = routes::disconnect(
        &p.connections,
        &p.connections,
        &SystemClock,
        &ws_event("disconnect.json"),
    )
    .await;
    assert_eq!(resp.status_code, 200);
    assert!(p.connections.for_user(&user).await.unwrap().is_empty());
    let seen = p.connections.last_seen(&user).await.unwrap();
    assert!(!seen.online && seen.at.is_some(), "last seen recorded");

    // A $connect without authorizer context (a misconfigured route) is refused.
    let mut bare = ws_event("connect.json");
    bare.request_context.authorizer.fields.clear();
    assert_eq!(
        routes::connect(&p.connections, &p.connections, &SystemClock, &bare)
            .await
            .status_code,
        401
    );
}

#[tokio::test]
async fn default_route_answers_malformed_frames_and_unknown_actions() {
    let resp = routes::default_route(&ws_event("default-malformed.json"));
    let f = frame(&resp);
    assert_eq!(f["ok"], false);
    assert_eq!(f["error"]["code"], "BAD_REQUEST");
    assert!(f["requestId"].is_null());

    let f = frame(&routes::default_route(&ws_event(
        "default-unknown-action.json",
    )));
    assert_eq!(f["error"]["code"], "UNKNOWN_ACTION");
    assert_eq!(f["requestId"], "r1");
    assert!(f["error"]["message"].as_str().unwrap().contains("fly"));
}

#[tokio::test]
async fn delete_account_posts_its_reply_then_closes_the_connection() {
    let p = Ports::default();
    let (key, creds) = signed_up(&p).await;
    let event = with_caller(
        ws_event("delete-account.json"),
        &creds.user_id,
        &creds.device_id,
    );
    let conn = ConnectionId::new(event.request_context.connection_id.clone().unwrap());
    p.gateway.open(&conn);
    let deps = p.delete();
    let reply = p.posted_reply(&routes::delete_account(&deps, &event).await);
    assert_eq!(reply["requestId"], "r2");
    assert_eq!(reply["ok"], true);
    assert_eq!(p.gateway.closed(), vec![conn]);
    let hash = courier_core::secrets::ApiKey::presented(key).hash();
    assert!(p.accounts.device_for_key(&hash).await.unwrap().is_none());

    // The fixture's caller (u_test) has no account: NOT_FOUND, in the route response.
    let resp = routes::delete_account(&deps, &ws_event("delete-account.json")).await;
    assert_eq!(frame(&resp)["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn a_companion_removing_itself_gets_its_reply_before_its_connection_is_closed() {
    use courier_core::ports::AccountStore;
    let p = Ports::default();
    let (_, creds) = signed_up(&p).await;
    let companion = device_of(&creds.user_id, "d_test", false);
    p.accounts.replace_devices(&companion, &[]).await.unwrap();
    let event = with_caller(ws_event("remove-device.json"), &creds.user_id, "d_test");
    let conn = ConnectionId::new(event.request_context.connection_id.clone().unwrap());
    p.gateway.open(&conn);
    let deps = courier_core::usecases::remove_device::Deps {
        accounts: &p.accounts,
        connections: &p.connections,
        presence: &p.connections,
        gateway: &p.gateway,
        keys: &p.keys,
        queues: &p.queues,
    };
    let reply = p.posted_reply(&routes::remove_device(&deps, &event).await);
    assert_eq!(
        (
            reply["requestId"].clone(),
            reply["result"]["removed"].clone()
        ),
        ("r3".into(), true.into())
    );
    assert_eq!(p.gateway.closed(), vec![conn]);
    assert!(
        p.accounts
            .device_for_key(&companion.key_hash)
            .await
            .unwrap()
            .is_none()
    );
    // Again: the device is gone, answered in the route response.
    let resp = routes::remove_device(&deps, &event).await;
    assert_eq!(frame(&resp)["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn codes_over_the_per_ip_limit_answer_429_with_retry_after_and_send_no_sms() {
    let p = Ports::default();
    let limiter = MemoryRateLimiter::default();
    let throttle = |max| courier_core::rate_limit::Throttle {
        limiter: &limiter,
        rule: window(max),
    };
    let deps = register_account::Deps {
        limits: Some(register_account::CodeLimits {
            per_phone: throttle(100),
            per_ip: throttle(2),
        }),
        sms_guard: None,
        ..p.register()
    };
    // Two numbers from the fixture's address (203.0.113.10), then a third is refused.
    for phone in ["+14155550100", "+14155550101"] {
        let body = format!(r#"{{"phone":"{phone}"}}"#);
        let resp =
            http::register_account(&deps, http_event("register-account.json", Some(&body))).await;
        assert_eq!(resp.status(), 202);
    }
    let resp = http::register_account(
        &deps,
        http_event("register-account.json", Some(r#"{"phone":"+14155550102"}"#)),
    )
    .await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry));
    let v = body_json(&resp);
    assert_eq!(v["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(v["error"]["retryAfter"], retry);
    assert_eq!(p.sms.sent().len(), 2, "no SMS for the refused request");
}

#[tokio::test]
async fn an_address_over_its_failed_connection_limit_is_refused_with_429_at_connect() {
    let p = Ports::default();
    let (key, _) = signed_up(&p).await;
    let limiter = MemoryRateLimiter::default();
    let failures = courier_core::rate_limit::Throttle {
        limiter: &limiter,
        rule: window(2),
    };
    let authorize = |key: &str| {
        let event = authorizer_event("authorizer-header.json", key);
        let (accounts, failures) = (&p.accounts, &failures);
        async move {
            authorizer::handle_limited(accounts, None, Some(failures), &SystemClock, &event).await
        }
    };
    for _ in 0..2 {
        assert_eq!(
            authorize("ck_wrong").await.unwrap_err().to_string(),
            "Unauthorized"
        );
    }
    // A neighbour at the same address with its right key (another prefix) is let in.
    let policy = authorize(&key).await.unwrap();
    assert!(policy["context"]["userId"].is_string(), "{policy}");
    // Over the limit: the same key prefix from this address is not looked at. The authorizer
    // lets the handshake reach the $connect route only, which refuses it with 429 and records
    // nothing.
    let policy = authorize("ck_wrong").await.unwrap();
    assert_eq!(policy["principalId"], "rate-limited");
    let context = policy["context"].as_object().unwrap();
    assert!(!context.contains_key("userId"));
    let retry = context[authorizer::RETRY_AFTER_CONTEXT]
        .as_str()
        .unwrap()
        .to_owned();

    let mut event = ws_event("connect.json");
    let fields = &mut event.request_context.authorizer.fields;
    fields.clear();
    fields.extend(context.clone());
    let resp = routes::connect(&p.connections, &p.connections, &SystemClock, &event).await;
    assert_eq!(resp.status_code, 429);
    assert_eq!(resp.headers["retry-after"].to_str().unwrap(), retry);
    let body = frame(&resp);
    assert_eq!(body["error"]["code"], "LIMIT_EXCEEDED");
    assert_eq!(body["error"]["retryAfter"].to_string(), retry);
    assert!(
        p.connections
            .for_user(&UserId::from_trusted("u_test"))
            .await
            .unwrap()
            .is_empty()
    );
}
