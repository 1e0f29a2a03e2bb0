//! The `webhook` Lambda's HTTP glue: API Gateway HTTP API / Function URL requests
//! (payload 2.0, base64 bodies decoded by `lambda_http`) to the core handler.

mod wiring;

pub use wiring::service_from_env;

use lambda_http::{Body, Request, Response};
use spotrunner_core::webhook::{WebhookRequest, WebhookService};

/// Answer one HTTP request with the core webhook handler (one invocation: the
/// metrics it counted are printed as it returns).
pub async fn handle(service: &WebhookService, req: Request) -> Response<Body> {
    let _metrics = spotrunner_aws::metrics::invocation();
    let method = req.method().as_str().to_string();
    let headers: Vec<(&str, &str)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let body: &[u8] = match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    };
    let wreq = WebhookRequest::from_headers(&method, headers, body);
    // The request's one read of the wall clock (`spotrunner_core::clock`).
    let out = service.handle(&wreq, chrono::Utc::now()).await;
    Response::builder()
        .status(out.status)
        .header("content-type", "application/json")
        .body(Body::Text(out.body.to_string()))
        .expect("valid response")
}
