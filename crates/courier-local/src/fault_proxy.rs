//! Small proxies in front of an emulator, so the fault switch can fail some of the calls made
//! through them: the functions' SNS calls (`POST /_local/faults/sns`, in front of moto), the
//! stream pollers' `GetRecords` (`POST /_local/faults/streams`, in front of DynamoDB Local) and
//! the functions' DynamoDB calls (`POST /_local/faults/gsi-lag` and
//! `/_local/faults/transaction-conflicts`, see [`crate::dynamodb_faults`]).
//! Every request is forwarded unchanged to the real endpoint, unless the switch says this one
//! fails: then it is answered with the service's own error document, as the service answers when
//! it fails. S3 is not proxied.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

use crate::dynamodb_faults::Plan;
use crate::faults::{Faults, StreamFault};

/// Which service a proxy stands in front of, and so which faults it injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// SNS (moto): a share of every call answers 500 `InternalError`.
    Sns,
    /// DynamoDB Streams (DynamoDB Local): armed `GetRecords` calls answer
    /// `ExpiredIteratorException` or 500 `InternalServerError`.
    DynamoDbStreams,
    /// DynamoDB (DynamoDB Local), for the functions: index reads lag and transactions conflict
    /// when armed ([`crate::dynamodb_faults`]).
    DynamoDb,
}

struct Proxy {
    service: Service,
    upstream: String,
    client: reqwest::Client,
    faults: Faults,
}

/// Starts a proxy for `service` on a free loopback port in front of `upstream`; returns its URL.
pub async fn start(
    service: Service,
    upstream: String,
    faults: Faults,
    shutdown: CancellationToken,
) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let proxy = std::sync::Arc::new(Proxy {
        service,
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
        faults,
    });
    let app = Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!("{service:?} proxy stopped: {e}");
        }
    });
    Ok(format!("http://{addr}"))
}

/// SNS's error document for a failure on its side, in the protocol the request used.
pub fn internal_error(json_protocol: bool) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut r = if json_protocol {
        let body = serde_json::json!({
            "__type": "InternalError",
            "message": "Internal error (injected by the local cloud's fault switch)",
        });
        let mut r = (StatusCode::INTERNAL_SERVER_ERROR, body.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-amz-json-1.0"),
        );
        r.headers_mut().insert(
            "x-amzn-query-error",
            HeaderValue::from_static("InternalError;Receiver"),
        );
        r
    } else {
        let body = format!(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>\
             <Type>Receiver</Type><Code>InternalError</Code><Message>Internal error (injected \
             by the local cloud's fault switch)</Message></Error><RequestId>{request_id}\
             </RequestId></ErrorResponse>"
        );
        let mut r = (StatusCode::INTERNAL_SERVER_ERROR, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// DynamoDB Streams' error document (awsJson1_0) for `fault`.
pub fn streams_error(fault: StreamFault) -> Response {
    let (status, kind) = match fault {
        StreamFault::ExpiredIterator => (StatusCode::BAD_REQUEST, "ExpiredIteratorException"),
        StreamFault::InternalError => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError"),
    };
    let body = serde_json::json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"),
        "message": format!("{kind} (injected by the local cloud's fault switch)"),
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// The injected answer to this request, if the switch fails it.
fn fault(p: &Proxy, headers: &axum::http::HeaderMap, body: &[u8]) -> Option<Response> {
    match p.service {
        Service::Sns => {
            let json_protocol = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            p.faults.sns_fault().then(|| {
                tracing::info!("fault injection: failing an SNS call with 500");
                internal_error(json_protocol)
            })
        }
        Service::DynamoDbStreams => {
            let get_records = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.ends_with(".GetRecords"));
            if !get_records {
                return None;
            }
            // Shard iterators start with their stream's ARN (`...:table/<name>/stream/...`), on
            // AWS as in DynamoDB Local: that is how a fault is kept to one table's shards.
            let iterator = || {
                serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["ShardIterator"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let f = p.faults.stream_fault(iterator)?;
            tracing::info!("fault injection: GetRecords answers {f:?}");
            Some(streams_error(f))
        }
        // Planned in `forward`: it may rewrite the request or act after it.
        Service::DynamoDb => None,
    }
}

async fn forward(State(p): State<std::sync::Arc<Proxy>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |x| x.as_str().to_string());
    let headers = req.headers().clone();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    if let Some(injected) = fault(&p, &headers, &body) {
        return injected;
    }
    let mut body = body;
    let mut rename: Option<(String, String)> = None;
    let mut replicate = None;
    if p.service == Service::DynamoDb {
        let op = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_string();
        match p.faults.dynamodb().plan(&op, &body) {
            Plan::Forward => {}
            Plan::Answer(r) => return r,
            Plan::IndexRead {
                body: b,
                replica,
                table,
            } => {
                body = Bytes::from(b);
                rename = Some((replica, table));
            }
            Plan::Write { items, lag } => replicate = Some((items, lag)),
        }
    }
    let mut out = p.client.request(method, format!("{}{path}", p.upstream));
    for (k, v) in &headers {
        if k != header::HOST && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    match out.body(body).send().await {
        Ok(r) => {
            let status = r.status();
            let response_headers = r.headers().clone();
            let mut body = r.bytes().await.unwrap_or_default();
            if let Some((replica, table)) = &rename {
                // The answer names the replica (ConsumedCapacity.TableName); name the table.
                let text = String::from_utf8_lossy(&body)
                    .replace(&format!("\"{replica}\""), &format!("\"{table}\""));
                body = Bytes::from(text);
            }
            if let Some((items, lag)) = replicate
                && status.is_success()
            {
                p.faults.dynamodb().replicate(
                    p.client.clone(),
                    p.upstream.clone(),
                    headers.clone(),
                    items,
                    lag,
                );
            }
            let mut resp = (status, body).into_response();
            for (k, v) in &response_headers {
                if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING {
                    resp.headers_mut().insert(k, v.clone());
                }
            }
            resp
        }
        Err(e) => {
            tracing::warn!("{:?} proxy: {e}", p.service);
            (StatusCode::BAD_GATEWAY, e.to_string()).into_response()
        }
    }
}
