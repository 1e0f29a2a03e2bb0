//! Public repositories: a queued job of one is ignored (`public_repository`)
//! unless its pool, or the global setting, allows public repositories.

use super::tests::{SECRET, post_with, received};
use super::*;
use crate::config::Config;
use serde_json::{Value, json};

fn config(extra_global: &str, extra_open_pool: &str) -> Config {
    Config::from_toml(&format!(
        r#"
deployment = "sr"
{extra_global}
[github]
auth = {{ type = "pat", token = "env:GH_TOKEN" }}
[webhook]
secrets = ["value:s3cret"]
[[pools]]
name = "linux"
labels = ["linux"]
max_runners = 3
[[pools]]
name = "open"
labels = ["open"]
max_runners = 3
{extra_open_pool}
"#
    ))
    .unwrap()
}

/// A queued job of repository `o/r`; `repository` fields merged in.
fn queued(labels: &[&str], repository: Value) -> Vec<u8> {
    let mut repo = json!({ "full_name": "o/r", "owner": { "login": "o", "type": "User" } });
    for (k, v) in repository.as_object().unwrap() {
        repo[k] = v.clone();
    }
    serde_json::to_vec(&json!({
        "action": "queued",
        "workflow_job": {
            "id": 77, "run_id": 5, "run_attempt": 1, "labels": labels,
            "created_at": "2026-11-23T10:00:00Z"
        },
        "repository": repo,
        "installation": { "id": 12 }
    }))
    .unwrap()
}

fn outcome(cfg: &Config, body: &[u8]) -> Outcome {
    let sig = sign(SECRET.as_bytes(), body);
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: None,
        signature: Some(&sig),
        body,
    };
    route(cfg, &WebhookSecrets::new(&[SECRET]), &req, received()).outcome
}

#[tokio::test]
async fn a_public_repositorys_job_is_ignored_by_default_and_enqueues_nothing() {
    let body = queued(&["self-hosted", "linux"], json!({ "private": false }));
    let (r, queue) = post_with(config("", ""), &body).await;
    assert_eq!(r.status, 202);
    let said = r.body["ignored"].as_str().unwrap();
    assert!(said.contains("o/r is public"), "{said}");
    assert!(said.contains("allow_public_repositories"), "{said}");
    assert!(queue.sent().is_empty());
    assert_eq!(
        outcome(&config("", ""), &body),
        Outcome::Ignored("public_repository")
    );
}

#[tokio::test]
async fn private_and_internal_repositories_are_served() {
    for repo in [
        json!({ "private": true }),
        json!({ "private": true, "visibility": "internal" }),
        json!({ "visibility": "private" }),
        json!({ "visibility": "internal" }),
    ] {
        let body = queued(&["self-hosted", "linux"], repo.clone());
        let (r, queue) = post_with(config("", ""), &body).await;
        assert_eq!(r.body["pool"], "linux", "{repo}");
        assert_eq!(queue.sent().len(), 1, "{repo}");
    }
}

#[test]
fn a_payload_that_does_not_say_counts_as_public() {
    for repo in [json!({}), json!({ "visibility": "public" })] {
        let body = queued(&["linux"], repo.clone());
        assert_eq!(
            outcome(&config("", ""), &body),
            Outcome::Ignored("public_repository"),
            "{repo}"
        );
    }
}

#[test]
fn the_global_switch_and_a_pools_own_setting_decide() {
    let public_linux = queued(&["linux"], json!({ "private": false }));
    let public_open = queued(&["open"], json!({ "private": false }));
    // Global on: every pool serves public repositories…
    let global = config("allow_public_repositories = true", "");
    assert_eq!(outcome(&global, &public_linux), Outcome::Accepted);
    assert_eq!(outcome(&global, &public_open), Outcome::Accepted);
    // …except one that says no.
    let global_but_not_open = config(
        "allow_public_repositories = true",
        "allow_public_repositories = false",
    );
    assert_eq!(
        outcome(&global_but_not_open, &public_open),
        Outcome::Ignored("public_repository")
    );
    // Global off (the default): only the pool that opts in.
    let only_open = config("", "allow_public_repositories = true");
    assert_eq!(outcome(&only_open, &public_open), Outcome::Accepted);
    assert_eq!(
        outcome(&only_open, &public_linux),
        Outcome::Ignored("public_repository")
    );
}

#[test]
fn the_sweeps_message_builder_applies_the_same_rule() {
    let labels = vec!["linux".to_string()];
    let job = |public| QueuedJob {
        job_id: 9,
        run_id: 1,
        run_attempt: 1,
        labels: &labels,
        created_at: None,
        repository: "o/r",
        owner: "o",
        owner_type: "User",
        public,
        installation_id: None,
        delivery_id: Some("sweep"),
        job_name: None,
    };
    let cfg = config("", "");
    let refused = queued_job_message(&cfg, &job(true), received()).unwrap_err();
    assert_eq!(refused.reason, "public_repository");
    assert_eq!(
        queued_job_message(&cfg, &job(false), received())
            .unwrap()
            .pool,
        "linux"
    );
}
