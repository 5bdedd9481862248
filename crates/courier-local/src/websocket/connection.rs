//! One WebSocket connection: the upgrade (`$connect` and its authorizer), the frames in both
//! directions through the routes' functions, and closing as API Gateway closes.

use super::*;

pub(super) async fn upgrade(gw: Arc<WsGateway>, peer: SocketAddr, mut req: Request) -> Response {
    let headers = req.headers().clone();
    let is_upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return message_body(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    };
    if !is_upgrade {
        return message_body(StatusCode::UPGRADE_REQUIRED, "Upgrade Required");
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let query = req.uri().query().unwrap_or("").to_string();
    let c = ConnectContext {
        connection_id: connection_id(),
        request_id: request_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        domain: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string(),
    };

    let connect = gw.route("$connect").cloned();
    // The stage's `$connect` throttle refuses before the authorizer runs, as API Gateway does.
    if let Some(t) = connect.as_ref().and_then(|r| r.throttle)
        && !gw.throttles.admit("$connect", t)
    {
        tracing::info!("$connect throttled: 429");
        return message_body(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let mut authorizer = None;
    if let Some(route) = &connect
        && let (Some(func), "CUSTOM") = (
            &route.authorizer_function,
            route.authorization_type.as_str(),
        )
    {
        match gw.authorize(route, func, &c, &headers, &query).await {
            Ok(ctx) => authorizer = Some(ctx),
            Err(refusal) => return refusal,
        }
    }

    let mut subprotocol = None;
    if let Some(func) = connect.as_ref().and_then(|r| r.function.as_deref()) {
        let (q, mq) = query_maps(&query);
        let mut ctx = gw.request_context(&c, "$connect", "CONNECT");
        if let Some(a) = &authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let mut event = json!({
            "headers": joined_headers(&headers),
            "multiValueHeaders": multi_value_headers(&headers),
            "requestContext": ctx,
            "isBase64Encoded": false,
        });
        if !q.is_empty() {
            event["queryStringParameters"] = J::Object(q);
            event["multiValueQueryStringParameters"] = J::Object(mq);
        }
        match gw.functions.invoke(func, &event).await {
            Ok(payload) => {
                let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
                let status = v.get("statusCode").and_then(J::as_u64).unwrap_or(200);
                if !(200..300).contains(&status) {
                    let status =
                        StatusCode::from_u16(status as u16).unwrap_or(StatusCode::FORBIDDEN);
                    let body = v.get("body").and_then(J::as_str).unwrap_or("").to_string();
                    // The integration's headers go with its refusal (Retry-After on a 429).
                    let mut refusal = (status, body).into_response();
                    if let Some(h) = v.get("headers").and_then(J::as_object) {
                        for (name, value) in h {
                            if let (Ok(name), Some(Ok(value))) = (
                                header::HeaderName::from_bytes(name.as_bytes()),
                                value.as_str().map(header::HeaderValue::from_str),
                            ) {
                                refusal.headers_mut().insert(name, value);
                            }
                        }
                    }
                    return refusal;
                }
                subprotocol = v.get("headers").and_then(|h| {
                    h.as_object()?.iter().find_map(|(k, v)| {
                        k.eq_ignore_ascii_case("sec-websocket-protocol")
                            .then(|| v.as_str().map(str::to_owned))
                            .flatten()
                    })
                });
            }
            Err(_) => {
                return message_body(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
            }
        }
    }

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let conn = Arc::new(Conn {
        id: c.connection_id.clone(),
        connected_at: c.connected_at,
        last_active: Mutex::new(c.connected_at),
        source_ip: c.source_ip.clone(),
        user_agent: c.user_agent.clone(),
        authorizer,
        out: out_tx,
    });
    gw.connections
        .lock()
        .unwrap()
        .insert(conn.id.clone(), conn.clone());
    tracing::info!(connection = %conn.id, "connected");

    let config = WebSocketConfig::default()
        .max_frame_size(Some(gw.limits.max_frame_bytes))
        .max_message_size(Some(gw.limits.max_message_bytes));
    let gw2 = gw.clone();
    let domain = c.domain.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                run_connection(gw2, conn, ws, out_rx, domain).await;
            }
            Err(e) => {
                tracing::warn!("upgrade failed: {e}");
                gw2.connections.lock().unwrap().remove(&conn.id);
                gw2.disconnect(&conn, &domain, 1006, "Connection dropped")
                    .await;
            }
        }
    });

    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

pub(super) type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Sends a close frame and waits (briefly) for the client's.
pub(super) async fn close_gracefully(ws: &mut Socket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    if ws.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Closes after a protocol-level error (the read side may hold half a frame): writes the close
/// frame directly and drains what the client still sends, so it can read the close.
pub(super) async fn close_after_error(ws: &mut Socket, code: u16, reason: &'static str) {
    let mut frame = vec![0x88, (2 + reason.len()) as u8];
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    let io = ws.get_mut();
    if io.write_all(&frame).await.is_err() || io.flush().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let _ = io.shutdown().await;
}

pub(super) async fn run_connection(
    gw: Arc<WsGateway>,
    conn: Arc<Conn>,
    mut ws: Socket,
    mut out_rx: mpsc::UnboundedReceiver<Outgoing>,
    domain: String,
) {
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let dispatcher = tokio::spawn(dispatch(gw.clone(), conn.clone(), in_rx, domain.clone()));
    let lifetime = tokio::time::sleep(gw.limits.max_lifetime);
    tokio::pin!(lifetime);
    let idle = tokio::time::sleep(gw.limits.idle_timeout);
    tokio::pin!(idle);
    let touch = |idle: &mut std::pin::Pin<&mut tokio::time::Sleep>| {
        *conn.last_active.lock().unwrap() = Utc::now();
        idle.as_mut()
            .reset(tokio::time::Instant::now() + gw.limits.idle_timeout);
    };
    let (code, reason): (u16, &str) = loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    touch(&mut idle);
                    let _ = in_tx.send(Incoming::Text(t.to_string()));
                }
                Some(Ok(Message::Binary(_))) => {
                    touch(&mut idle);
                    let _ = in_tx.send(Incoming::Binary);
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => touch(&mut idle),
                Some(Ok(Message::Close(frame))) => {
                    let _ = ws.close(None).await;
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    break (code, "Connection closed normally by client");
                }
                Some(Err(WsError::Capacity(_))) => {
                    close_after_error(&mut ws, 1009, "Message too big").await;
                    break (1009, "Message too big");
                }
                Some(Err(_)) | None => break (1006, "Connection dropped"),
            },
            Some(out) = out_rx.recv() => match out {
                Outgoing::Text(s) => {
                    if ws.send(Message::text(s)).await.is_err() {
                        break (1006, "Connection dropped");
                    }
                }
                Outgoing::Binary(b) => {
                    if ws.send(Message::binary(b)).await.is_err() {
                        break (1006, "Connection dropped");
                    }
                }
                Outgoing::Close(code, reason) => {
                    close_gracefully(&mut ws, code, reason).await;
                    break (code, reason);
                }
                Outgoing::Abort => {
                    // No close frame: shut the TCP stream down (FIN) and let go of it.
                    let _ = ws.get_mut().shutdown().await;
                    break (1006, "Connection dropped");
                }
            },
            _ = &mut idle => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                break (1001, "Going away");
            }
            _ = &mut lifetime => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                break (1001, "Going away");
            }
            _ = gw.shutdown.cancelled() => {
                close_gracefully(&mut ws, 1001, "Going away").await;
                return;
            }
        }
    };
    drop(ws);
    gw.connections.lock().unwrap().remove(&conn.id);
    tracing::info!(connection = %conn.id, code, "disconnected: {reason}");
    drop(in_tx);
    let _ = dispatcher.await;
    gw.disconnect(&conn, &domain, code, reason).await;
}

impl WsGateway {
    pub(super) fn context_for(&self, conn: &Conn, domain: &str) -> ConnectContext {
        ConnectContext {
            connection_id: conn.id.clone(),
            request_id: request_id(),
            connected_at: conn.connected_at,
            source_ip: conn.source_ip.clone(),
            user_agent: conn.user_agent.clone(),
            domain: domain.to_string(),
        }
    }

    pub(super) async fn disconnect(&self, conn: &Conn, domain: &str, code: u16, reason: &str) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let Some(func) = self.route("$disconnect").and_then(|r| r.function.clone()) else {
            return;
        };
        let c = self.context_for(conn, domain);
        let mut ctx = self.request_context(&c, "$disconnect", "DISCONNECT");
        ctx["disconnectStatusCode"] = J::from(code);
        ctx["disconnectReason"] = J::String(reason.to_string());
        if let Some(a) = &conn.authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let event = json!({
            "headers": {"Host": domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""},
            "multiValueHeaders": {"Host": [domain]},
            "requestContext": ctx,
            "isBase64Encoded": false,
        });
        let _ = self.functions.invoke(&func, &event).await;
    }

    /// Picks the route for a message by the route selection expression.
    pub(super) fn select_route(&self, body: &str) -> Option<&WsRoute> {
        let expr = self.api.route_selection_expression.as_str();
        let selected = expr.strip_prefix("$request.body.").and_then(|path| {
            let v: J = serde_json::from_str(body).ok()?;
            let mut cur = &v;
            for part in path.split('.') {
                cur = cur.get(part)?;
            }
            let key = cur.as_str()?;
            if key.starts_with('$') {
                return None;
            }
            self.api.routes.get(key)
        });
        selected.or_else(|| self.api.routes.get("$default"))
    }

    pub(super) async fn handle_message(&self, conn: &Conn, body: String, domain: &str) {
        let c = self.context_for(conn, domain);
        let error_frame = |message: &str| {
            json!({"message": message, "connectionId": conn.id, "requestId": c.request_id})
                .to_string()
        };
        let Some(route) = self.select_route(&body).cloned() else {
            let _ = conn.out.send(Outgoing::Text(error_frame("Forbidden")));
            return;
        };
        let Some(func) = route.function.as_deref() else {
            let _ = conn.out.send(Outgoing::Text(error_frame("Forbidden")));
            return;
        };
        // The stage's route throttle: the function is not invoked, the client gets the
        // gateway's own error frame (no request id of the client's, like its other errors).
        if let Some(t) = route.throttle
            && !self.throttles.admit(&route.route_key, t)
        {
            tracing::info!(route = %route.route_key, "throttled");
            let _ = conn
                .out
                .send(Outgoing::Text(error_frame("Too Many Requests")));
            return;
        }
        let mut ctx = self.request_context(&c, &route.route_key, "MESSAGE");
        ctx["messageId"] = J::String(format!("{}=", random_id(15)));
        if let Some(a) = &conn.authorizer {
            ctx["authorizer"] = J::Object(a.clone());
        }
        let event = json!({
            "requestContext": ctx,
            "body": body,
            "isBase64Encoded": false,
        });
        match self.functions.invoke(func, &event).await {
            Ok(payload) => {
                if !route.two_way {
                    return;
                }
                let v: J = serde_json::from_slice(&payload).unwrap_or(J::Null);
                if let Some(b) = v.get("body") {
                    let text = match b {
                        J::String(s) => s.clone(),
                        J::Null => String::new(),
                        other => other.to_string(),
                    };
                    if text.len() > self.limits.max_message_bytes {
                        // API Gateway's message payload quota (128 KB) holds for what it sends
                        // too: a route response over it never reaches the client, which waits
                        // for a reply that does not come.
                        tracing::warn!(
                            connection = %conn.id,
                            bytes = text.len(),
                            "route response over the message limit: not sent"
                        );
                    } else if !text.is_empty() {
                        let _ = conn.out.send(Outgoing::Text(text));
                    }
                }
            }
            Err(_) => {
                let _ = conn
                    .out
                    .send(Outgoing::Text(error_frame("Internal server error")));
            }
        }
    }
}

pub(super) async fn dispatch(
    gw: Arc<WsGateway>,
    conn: Arc<Conn>,
    mut rx: mpsc::UnboundedReceiver<Incoming>,
    domain: String,
) {
    while let Some(inc) = rx.recv().await {
        match inc {
            // Each message is its own invocation, started at once, as API Gateway does: two
            // frames of one connection may run at the same time and finish in either order.
            Incoming::Text(body) => {
                let (gw, conn, domain) = (gw.clone(), conn.clone(), domain.clone());
                tokio::spawn(async move { gw.handle_message(&conn, body, &domain).await });
            }
            Incoming::Binary => {
                let frame = json!({
                    "message": "Binary frames are not supported",
                    "connectionId": conn.id,
                    "requestId": request_id(),
                });
                let _ = conn.out.send(Outgoing::Text(frame.to_string()));
            }
        }
    }
}
