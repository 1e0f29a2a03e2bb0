//! `POST /webhook` (exactly what GitHub sends), `GET /healthz`, `GET /status`.
//!
//! Every error answer is JSON `{"error": "..."}`: the handlers', a 404 for an
//! unknown route, a 405, a 413 for a body over GitHub's 25 MiB webhook limit, a
//! 408 for a body not received in time, and anything an extractor refuses.
//! The connection-level limits (cap, header read timeout) are in `front.rs`.

use super::Shared;
use crate::status;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use futures::StreamExt;
use spotrunner_core::webhook::{MAX_BODY_BYTES, WebhookRequest};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take to send a webhook's body, from the end of its head.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// A body over the limit is read and thrown away (not kept) up to this much, so
/// a client that sends it whole still reads the 413 before the connection
/// closes; past it the 413 is sent and the connection closed.
const DISCARD_UP_TO: usize = 4 * MAX_BODY_BYTES;
/// What is reserved up front for a body of a declared length.
const PREALLOCATE_UP_TO: usize = 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .route("/status", get(status_json))
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
        .with_state(shared)
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, serde_json::json!({ "error": message.into() }))
}

/// Answered as normal during a SIGTERM drain too: GitHub does not redeliver a
/// failed delivery, so a webhook is refused (5xx) only when it could not be
/// persisted; the worker loops, not this, stop at SIGTERM.
async fn webhook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let req = WebhookRequest::from_headers("POST", pairs, &body);
    let out = shared.handlers().webhook.handle(&req, Utc::now()).await;
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, out.body)
}

fn too_large() -> Response {
    let mut r = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body exceeds GitHub's 25 MiB webhook limit ({MAX_BODY_BYTES} bytes)"),
    );
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
}

/// The body, at most [`MAX_BODY_BYTES`] of it kept, within [`BODY_TIMEOUT`].
/// Over the limit: 413 (at once when the client waits for `100 Continue`;
/// otherwise once the body is read and thrown away, up to [`DISCARD_UP_TO`]).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let declared = content_length(headers);
    let mut over = declared.is_some_and(|n| n > MAX_BODY_BYTES);
    if over && expects_continue(headers) {
        // It has not sent the body and will not before we say so.
        return Err(too_large());
    }
    let mut kept = Vec::with_capacity(if over {
        0
    } else {
        declared.unwrap_or(0).min(PREALLOCATE_UP_TO)
    });
    let mut seen = 0usize;
    let mut stream = body.into_data_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("could not read the body: {e}"),
                )
            })?;
            seen = seen.saturating_add(chunk.len());
            if seen > MAX_BODY_BYTES {
                if !over {
                    over = true;
                    kept = Vec::new();
                }
                if seen > DISCARD_UP_TO {
                    break;
                }
            } else if !over {
                kept.extend_from_slice(&chunk);
            }
        }
        Ok::<(), Response>(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Err(refused)) => Err(refused),
        _ if over => Err(too_large()),
        Ok(Ok(())) => Ok(kept),
        Err(_) => {
            let mut r = error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body was not received within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            );
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
    }
}

/// 503 while stopping, so a load balancer moves on; `/webhook` still answers.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.stopping() {
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "ok": false, "stopping": true }),
        );
    }
    json(StatusCode::OK, serde_json::json!({ "ok": true }))
}

async fn status_json(State(shared): State<Arc<Shared>>) -> Response {
    let h = shared.handlers();
    match status::collect(&shared.adapters, &h.config).await {
        Ok(s) => json(StatusCode::OK, serde_json::to_value(s).unwrap_or_default()),
        Err(e) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": e }),
        ),
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; serve answers POST /webhook, GET /healthz and GET /status",
            uri.path()
        ),
    )
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Turn an error answer that is not JSON (axum's 405, an extractor's
/// rejection) into `{"error": "..."}`, its status and other headers kept.
async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        let allowed = parts
            .headers
            .get(header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        format!("method {method} not allowed on {path}; allowed: {allowed}")
    } else if !text.is_empty() {
        text
    } else {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    Response::from_parts(parts, Body::from(body))
}
