//! The burst's deliveries: GitHub's own queued `workflow_job` examples
//! (`@octokit/webhooks-examples`), one per job with a fresh id and a
//! `created_at` of now, signed like GitHub signs them.

use serde_json::Value;
use spotrunner_testkit::examples::examples;

pub const SECRET: &str = "bench-webhook-secret-0123456789abcdef";

/// Labels of a pool that serves both queued examples.
pub const POOL_LABELS: [&str; 2] = ["ubuntu-latest", "k8s"];

pub struct Job {
    pub id: u64,
    pub repo: String,
    /// The queued payload.
    pub payload: Value,
    pub body: Vec<u8>,
    pub signature: String,
    /// `X-GitHub-Delivery` of the first delivery (a duplicate reuses it, as a
    /// redelivery does).
    pub delivery: String,
}

/// `n` jobs, ids from `first_id`, alternating between the examples.
pub fn jobs(n: usize, first_id: u64) -> Vec<Job> {
    let queued: Vec<Value> = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .map(|e| e.payload)
        .collect();
    assert!(!queued.is_empty(), "no queued workflow_job example");
    (0..n)
        .map(|i| {
            let mut p = queued[i % queued.len()].clone();
            let id = first_id + i as u64;
            p["workflow_job"]["id"] = id.into();
            p["workflow_job"]["run_id"] = (id + 10_000_000).into();
            p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
            let repo = p["repository"]["full_name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let body = serde_json::to_vec(&p).expect("payload serializes");
            let signature = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
            Job {
                id,
                repo,
                payload: p,
                body,
                signature,
                delivery: uuid::Uuid::new_v4().to_string(),
            }
        })
        .collect()
}

/// The same job as GitHub reports it later (`in_progress` / `completed` on
/// `runner`); body and signature.
pub fn progressed(job: &Job, action: &str, runner: &str) -> (Vec<u8>, String) {
    let mut p = job.payload.clone();
    p["action"] = action.into();
    p["workflow_job"]["status"] = action.into();
    p["workflow_job"]["runner_name"] = runner.into();
    p["workflow_job"]["started_at"] = chrono::Utc::now().to_rfc3339().into();
    if action == "completed" {
        p["workflow_job"]["conclusion"] = "success".into();
        p["workflow_job"]["completed_at"] = chrono::Utc::now().to_rfc3339().into();
    }
    let body = serde_json::to_vec(&p).expect("payload serializes");
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

/// The order of the 2·n deliveries: job i's original, and its duplicate
/// `lag` originals later (then the remaining duplicates). `(index, duplicate)`.
pub fn order(n: usize, lag: usize, duplicates: bool) -> Vec<(usize, bool)> {
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        out.push((i, false));
        if duplicates && i >= lag {
            out.push((i - lag, true));
        }
    }
    if duplicates {
        for i in n.saturating_sub(lag)..n {
            out.push((i, true));
        }
    }
    out
}
