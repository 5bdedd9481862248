use super::*;

fn route(method: Option<&str>, path: Option<&str>) -> HttpRoute {
    HttpRoute {
        function: format!("{method:?} {path:?}"),
        method: method.map(str::to_owned),
        path: path.map(str::to_owned),
        throttle: None,
    }
}

#[test]
fn most_specific_route_wins() {
    let routes = vec![
        route(None, None),
        route(Some("ANY"), Some("/v1/{proxy+}")),
        route(Some("GET"), Some("/v1/devices/link-requests/{linkId}")),
        route(Some("POST"), Some("/v1/accounts")),
        route(Some("ANY"), Some("/v1/accounts")),
    ];
    let (r, _) = select_route(&routes, "POST", "/v1/accounts").unwrap();
    assert_eq!(r.route_key(), "POST /v1/accounts");
    let (r, _) = select_route(&routes, "PUT", "/v1/accounts").unwrap();
    assert_eq!(r.route_key(), "ANY /v1/accounts");
    let (r, p) = select_route(&routes, "GET", "/v1/devices/link-requests/abc%20d").unwrap();
    assert_eq!(r.route_key(), "GET /v1/devices/link-requests/{linkId}");
    assert_eq!(p["linkId"], "abc d");
    let (r, p) = select_route(&routes, "GET", "/v1/x/y").unwrap();
    assert_eq!(r.route_key(), "ANY /v1/{proxy+}");
    assert_eq!(p["proxy"], "x/y");
    let (r, _) = select_route(&routes, "GET", "/other").unwrap();
    assert_eq!(r.route_key(), "$default");
    assert!(select_route(&routes[1..], "GET", "/other").is_none());
}

#[test]
fn response_without_status_code_is_json_200() {
    let r = map_response(br#"{"a":1}"#);
    assert_eq!(r.status(), StatusCode::OK);
    let r = map_response(
        br#"{"statusCode":202,"headers":{"x-a":"1"},"cookies":["c=1"],"body":"aGk=","isBase64Encoded":true}"#,
    );
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["x-a"], "1");
    assert_eq!(r.headers()["set-cookie"], "c=1");
    let r = map_response(b"not json");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
