//! The Lambda glue: Function URL / HTTP API (payload 2.0) events, base64 bodies
//! included, reach the core handler byte for byte.

use base64::Engine;
use lambda_http::Body;
use serde_json::json;
use spotrunner_core::Config;
use spotrunner_core::fakes::{MemoryJobStates, MemoryQueue};
use spotrunner_core::webhook::{WebhookSecrets, WebhookService, sign};
use std::sync::Arc;

fn service(queue: Arc<MemoryQueue>) -> WebhookService {
    let config = Config::from_toml(
        r#"
deployment = "sr"
# GitHub's example payloads are of public repositories, of any owner.
allowed_owners = ["*"]
allow_public_repositories = true
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 1
"#,
    )
    .unwrap();
    WebhookService::new(
        Arc::new(config),
        WebhookSecrets::new(&["s"]),
        queue,
        Arc::new(MemoryJobStates::default()),
    )
}

fn function_url_event(method: &str, body: &[u8], base64: bool, sig: &str) -> String {
    let body_field = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-github-event": "workflow_job",
            "x-github-delivery": "d-42",
            "x-hub-signature-256": sig
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": { "method": method, "path": "/", "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "GitHub-Hookshot/1" },
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795000000000u64
        },
        "body": body_field,
        "isBase64Encoded": base64
    })
    .to_string()
}

fn queued_body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "queued",
        "workflow_job": { "id": 5, "run_id": 6, "labels": ["linux"] },
        "repository": { "full_name": "o/r", "owner": { "login": "o" } }
    }))
    .unwrap()
}

fn text(body: &Body) -> String {
    match body {
        Body::Text(t) => t.clone(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn base64_and_plain_bodies_are_verified_on_the_raw_bytes() {
    for base64 in [false, true] {
        let queue = Arc::new(MemoryQueue::default());
        let svc = service(queue.clone());
        let body = queued_body();
        let sig = sign(b"s", &body);
        let req = lambda_http::request::from_str(&function_url_event("POST", &body, base64, &sig))
            .expect("payload 2.0 event parses");
        let resp = spotrunner_webhook::handle(&svc, req).await;
        assert_eq!(resp.status(), 202, "base64={base64}: {}", text(resp.body()));
        assert_eq!(resp.headers()["content-type"], "application/json");
        let sent = queue.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].job_id, 5);
        assert_eq!(sent[0].delivery_id.as_deref(), Some("d-42"));
    }
}

#[tokio::test]
async fn wrong_method_and_bad_signature_through_the_glue() {
    let queue = Arc::new(MemoryQueue::default());
    let svc = service(queue.clone());
    let body = queued_body();
    let sig = sign(b"s", &body);
    let req =
        lambda_http::request::from_str(&function_url_event("GET", &body, false, &sig)).unwrap();
    assert_eq!(spotrunner_webhook::handle(&svc, req).await.status(), 405);
    let bad = sign(b"other", &body);
    let req =
        lambda_http::request::from_str(&function_url_event("POST", &body, true, &bad)).unwrap();
    let resp = spotrunner_webhook::handle(&svc, req).await;
    assert_eq!(resp.status(), 401);
    assert!(text(resp.body()).contains("X-Hub-Signature-256"));
    assert!(queue.sent().is_empty());
}
