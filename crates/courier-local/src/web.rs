//! Courier Web on the HTTP port: the built client (`web/dist`, from `./dev web`) at `/`, and
//! `/config.json` telling the page where the WebSocket API is (the port may be any free one).
//! Paths the template's HTTP API routes are never served from here: the gateway tries its
//! routes first. On AWS the same files are served by CloudFront from S3 (template.yaml).
//!
//! Every file goes out with the Content-Security-Policy CloudFront gives it
//! (`WebClientHeadersPolicy` in template.yaml), with this cloud's origins: scripts, styles and
//! the wasm from the page's origin only, connections to the page's origin (the HTTP API), the
//! WebSocket API and S3 (presigned media URLs) only.

use std::path::{Component, Path, PathBuf};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

/// Where the built client is and what the page needs to know.
#[derive(Debug, Clone)]
pub struct WebClient {
    /// The build output (`index.html`, `assets/`).
    pub dir: PathBuf,
    /// The WebSocket API's port (the host is the one the page was loaded from).
    pub ws_port: u16,
    /// Where presigned media URLs point (the S3 endpoint), for the CSP's `connect-src`.
    pub s3_endpoint: Option<String>,
}

/// The page's Content-Security-Policy without `connect-src`, as template.yaml's
/// `WebClientHeadersPolicy` has it.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
img-src 'self' blob: data:; media-src 'self' blob:; manifest-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// The page shown when the client is not built.
const NOT_BUILT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Courier Web is not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Courier Web is not built yet</h1>
<p>The local cloud serves the web client from <code>web/dist</code>, which is not there. Build it
with</p>
<pre>./dev web</pre>
<p>(it compiles <code>crates/courier-web</code> to WebAssembly, runs wasm-bindgen and Vite;
<code>infra/install</code> puts the wasm32 target, wasm-bindgen-cli and the npm packages in place).
<code>./dev up</code> does it before starting. Then reload this page.</p>
</body></html>
"#;

impl WebClient {
    /// Serves `GET path` (already known not to be an API route); `host` is the request's
    /// `Host` header. `None`: not a web client path.
    pub fn serve(&self, path: &str, host: Option<&str>) -> Option<Response> {
        let mut resp = self.serve_file(path, host)?;
        if let Ok(csp) = HeaderValue::from_str(&self.csp(host)) {
            resp.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        Some(resp)
    }

    /// The Content-Security-Policy for a page loaded through `host`.
    pub fn csp(&self, host: Option<&str>) -> String {
        let hostname = host.map(host_name).unwrap_or("127.0.0.1");
        let mut connect = format!("'self' ws://{hostname}:{}", self.ws_port);
        if let Some(origin) = self.s3_endpoint.as_deref().and_then(origin_of) {
            connect.push(' ');
            connect.push_str(&origin);
        }
        format!("{CSP}; connect-src {connect}")
    }

    fn serve_file(&self, path: &str, host: Option<&str>) -> Option<Response> {
        if path == "/config.json" {
            return Some(self.config(host));
        }
        let rel = if path == "/" {
            "index.html"
        } else {
            path.trim_start_matches('/')
        };
        let file = safe_join(&self.dir, rel)?;
        match std::fs::read(&file) {
            Ok(bytes) => {
                let mut resp = bytes.into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(content_type(&file)),
                );
                // Vite puts a content hash in every asset's name; the page itself must be fresh.
                let cache = if rel.starts_with("assets/") {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
                h.insert(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                );
                Some(resp)
            }
            Err(_) if rel == "index.html" => {
                Some((StatusCode::SERVICE_UNAVAILABLE, Html(NOT_BUILT)).into_response())
            }
            Err(_) => None,
        }
    }

    fn config(&self, host: Option<&str>) -> Response {
        let hostname = host.map(host_name).unwrap_or("127.0.0.1");
        let mut resp = axum::Json(json!({
            "wsUrl": format!("ws://{hostname}:{}", self.ws_port),
        }))
        .into_response();
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// `scheme://host[:port]` of a URL, as a CSP source.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
}

/// The host name of a `Host` header (`127.0.0.1:3000`, `[::1]:3000`, `localhost`).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.split(':').next().unwrap_or(host)
}

/// `dir/rel` when `rel` is a plain relative path (no `..`, no root, no hidden segment).
fn safe_join(dir: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\\') || rel.contains('%') {
        return None;
    }
    let rel = Path::new(rel);
    let plain = rel.components().all(|c| match c {
        Component::Normal(s) => !s.to_string_lossy().starts_with('.'),
        _ => false,
    });
    plain.then(|| dir.join(rel))
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(dir: &Path) -> WebClient {
        WebClient {
            dir: dir.to_owned(),
            ws_port: 4001,
            s3_endpoint: Some("http://127.0.0.1:5000/".into()),
        }
    }

    #[test]
    fn serves_the_build_and_nothing_outside_it() {
        let root = std::env::temp_dir().join(format!("courier-web-{}", uuid::Uuid::new_v4()));
        let dist = root.join("dist");
        std::fs::create_dir_all(dist.join("assets")).unwrap();
        std::fs::write(dist.join("index.html"), "<html>hi</html>").unwrap();
        std::fs::write(dist.join("assets/app.wasm"), [0, 97, 115, 109]).unwrap();
        std::fs::write(root.join("secret.txt"), "no").unwrap();
        let w = web(&dist);

        let r = w.serve("/", None).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
             img-src 'self' blob: data:; media-src 'self' blob:; manifest-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'; \
             connect-src 'self' ws://127.0.0.1:4001 http://127.0.0.1:5000"
        );
        let r = w.serve("/assets/app.wasm", None).unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/wasm");
        assert!(w.serve("/../secret.txt", None).is_none());
        assert!(w.serve("/assets/../../secret.txt", None).is_none());
        assert!(w.serve("/%2e%2e/secret.txt", None).is_none());
        assert!(w.serve("/missing.js", None).is_none());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn without_a_build_the_page_says_how_to_build_it() {
        let w = web(Path::new("/nonexistent/courier/web/dist"));
        let r = w.serve("/", None).unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(NOT_BUILT.contains("./dev web"));
    }

    #[tokio::test]
    async fn the_config_names_the_websocket_on_the_pages_host() {
        assert_eq!(host_name("127.0.0.1:3000"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:3000"), "[::1]");
        let r = web(Path::new("/x"))
            .serve("/config.json", Some("localhost:3000"))
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["wsUrl"], "ws://localhost:4001");
    }
}
