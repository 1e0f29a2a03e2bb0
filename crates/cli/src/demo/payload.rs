//! The demo's `workflow_job` webhooks, shaped and signed like GitHub's.

use super::REPO;
use chrono::Utc;

pub fn workflow_job(action: &str, id: u64, labels: &[&str], runner: Option<&str>) -> Vec<u8> {
    let now = Utc::now().to_rfc3339();
    let body = serde_json::json!({
        "action": action,
        "workflow_job": {
            "id": id,
            "run_id": id + 100_000,
            "run_attempt": 1,
            "status": action,
            "labels": labels,
            "created_at": now,
            "started_at": if action == "queued" { None } else { Some(&now) },
            "runner_name": runner,
        },
        "repository": {
            "full_name": REPO,
            "owner": { "login": "demo-org", "type": "Organization" },
            // A private repository: public ones are not served by default.
            "private": true,
            "visibility": "private",
        },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// POST one webhook; returns the HTTP status and, when the webhook ignored
/// or refused it, why (its answer's `ignored` / `error`).
pub async fn send(
    client: &reqwest::Client,
    addr: &str,
    secret: &str,
    body: &[u8],
) -> Result<(u16, Option<String>), String> {
    let sig = spotrunner_core::webhook::sign(secret.as_bytes(), body);
    let resp = client
        .post(format!("http://{addr}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", sig)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| format!("POST /webhook: {e}"))?;
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    let why = ["ignored", "error"]
        .iter()
        .find_map(|k| answer[*k].as_str().map(|w| format!("{k}: {w}")));
    Ok((status, why))
}
