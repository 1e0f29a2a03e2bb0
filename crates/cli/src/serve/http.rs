//! `POST /webhook` (exactly what GitHub sends), `GET /healthz`, `GET /status`.

use super::Shared;
use crate::status;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use spotrunner_core::webhook::WebhookRequest;
use std::sync::Arc;

pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/webhook", post(webhook))
        .route("/healthz", get(healthz))
        .route("/status", get(status_json))
        .with_state(shared.clone());
    let mut stop = shared.stop_signal();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "http server failed");
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn webhook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if shared.stopping() {
        // GitHub redelivers on 5xx: the job is not lost, a restart takes it.
        return json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": "shutting down; redeliver later" }),
        );
    }
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let req = WebhookRequest::from_headers("POST", pairs, &body);
    let out = shared.handlers().webhook.handle(&req).await;
    let status = StatusCode::from_u16(out.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, out.body)
}

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
