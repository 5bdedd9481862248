//! `courier_lambda::runtime::serve` against a stand-in Lambda runtime API: each invocation's
//! handler sees that invocation's X-Ray trace id, a DynamoDB call it makes carries the trace id as
//! `X-Amzn-Trace-Id`, and the process environment is never given `_X_AMZN_TRACE_ID` (the
//! upstream runtime set it with `setenv` per invocation, which glibc never frees:
//! vendor/README.md). The handler is built by the first invocation, as the functions build
//! theirs (`courier_lambda::runtime::Lazy`), and only once.
//!
//! One test in this binary: it sets the Lambda variables the runtime reads from the environment.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use courier_aws::trace;
use courier_lambda::runtime::Lazy;
use lambda_runtime::{Error, LambdaEvent, Runtime, service_fn};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

const TRACE_IDS: [&str; 3] = [
    "Root=1-6b0c444c-a4f3f7fdb9894749a440b195;Parent=efe56c4b57e346f6;Sampled=1",
    "Root=1-6b0c444d-00000000000000000000000a;Parent=0000000000000001;Sampled=0",
    "Root=1-6b0c444e-00000000000000000000000b;Parent=0000000000000002;Sampled=1",
];

#[derive(Clone)]
struct Api {
    next: Arc<Mutex<usize>>,
    answers: mpsc::UnboundedSender<(String, String)>,
}

async fn next(State(api): State<Api>) -> impl IntoResponse {
    let n = {
        let mut next = api.next.lock().unwrap();
        *next += 1;
        *next
    };
    if n > TRACE_IDS.len() {
        // No more invocations: hold the poll, as Lambda does while the function is idle.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        format!("req-{n}").parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        "9999999999999".parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:000000000000:function:f"
            .parse()
            .unwrap(),
    );
    headers.insert("lambda-runtime-trace-id", TRACE_IDS[n - 1].parse().unwrap());
    (StatusCode::OK, headers, format!("{{\"n\":{n}}}"))
}

async fn response(
    State(api): State<Api>,
    Path(id): Path<String>,
    body: String,
) -> impl IntoResponse {
    let _ = api.answers.send((id, body));
    StatusCode::ACCEPTED
}

/// Answers every DynamoDB call with an empty table list and reports the trace header it carried.
async fn dynamodb(
    State(headers_seen): State<mpsc::UnboundedSender<Option<String>>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let trace = headers
        .get(trace::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = headers_seen.send(trace);
    (
        [("content-type", "application/x-amz-json-1.0")],
        r#"{"TableNames":[]}"#,
    )
}

#[tokio::test]
async fn invocations_carry_their_trace_id_to_aws_and_never_into_the_environment() {
    let (answers_tx, mut answers) = mpsc::unbounded_channel();
    let api = Api {
        next: Arc::default(),
        answers: answers_tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let runtime_api = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let dynamo_app = Router::new().route("/", post(dynamodb)).with_state(seen_tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dynamo_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, dynamo_app).await.unwrap() });

    // SAFETY: the only test of this binary, and nothing else runs yet.
    unsafe {
        std::env::set_var("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string());
        std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", "f");
        std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        std::env::set_var("AWS_LAMBDA_LOG_STREAM_NAME", "s");
        std::env::set_var("AWS_LAMBDA_LOG_GROUP_NAME", "g");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "local");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "local");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{dynamo_addr}"));
        std::env::remove_var("_X_AMZN_TRACE_ID");
    }
    // Built the way the functions build theirs: by the first invocation (runtime::Lazy).
    let builds = Arc::new(Mutex::new(0));
    let counter = builds.clone();
    let handler = Lazy::new(move || {
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            let sdk = courier_aws::config::sdk_config().await;
            let dynamo = courier_aws::config::dynamodb(&sdk);
            Ok(service_fn(move |event: LambdaEvent<serde_json::Value>| {
                let dynamo = dynamo.clone();
                async move {
                    // What the handler can see: its own trace id, not the environment's.
                    let env = std::env::var("_X_AMZN_TRACE_ID").ok();
                    let current = trace::current();
                    dynamo.list_tables().send().await?;
                    Ok::<_, Error>(serde_json::json!({
                        "n": event.payload["n"],
                        "current": current,
                        "env": env,
                    }))
                }
            }))
        }
    });
    assert_eq!(
        *builds.lock().unwrap(),
        0,
        "nothing is built before the first invocation"
    );

    let checks = async {
        for (n, id) in TRACE_IDS.iter().enumerate() {
            let (request, body) = answers.recv().await.unwrap();
            assert_eq!(request, format!("req-{}", n + 1));
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["n"], n + 1);
            assert_eq!(body["current"], *id, "invocation {}", n + 1);
            assert_eq!(
                body["env"],
                serde_json::Value::Null,
                "the runtime set _X_AMZN_TRACE_ID in the environment"
            );
            assert_eq!(seen.recv().await.unwrap().as_deref(), Some(*id));
        }
    };
    // The lazy handler is not `Send` (a function's runtime runs on its main task), so the
    // runtime runs beside the checks rather than on a task of its own.
    tokio::select! {
        result = courier_lambda::runtime::serve(Runtime::new(handler)) => {
            panic!("the runtime stopped: {result:?}")
        }
        () = checks => {}
    }
    assert_eq!(
        *builds.lock().unwrap(),
        1,
        "built once, for all three invocations"
    );
    assert!(std::env::var_os("_X_AMZN_TRACE_ID").is_none());
}
