//! Per-job sizing from labels across crates: GitHub's own `workflow_job`
//! example with sizing labels through the webhook, and a sized job through
//! create-runner's real adapters (CreateFleet on moto, the GitHub client
//! against the fake GitHub).

mod common;

use common::*;
use serde_json::json;
use spotrunner_core::Config;
use spotrunner_core::fakes::{MemoryJobStates, MemoryQueue};
use spotrunner_core::ports::{Ledger, tags};
use spotrunner_core::webhook::{WebhookRequest, WebhookSecrets, WebhookService, sign};
use spotrunner_testkit::examples::examples;
use std::sync::Arc;

const SECRET: &str = "sizing-secret";

fn webhook(queue: Arc<MemoryQueue>) -> WebhookService {
    let config = Config::from_toml(
        r#"
deployment = "sr"
# GitHub's example payloads are of public repositories, of any owner.
allowed_owners = ["*"]
allow_public_repositories = true
max_total_weight = 20
[github]
auth = { type = "pat", token = "env:GH_TOKEN" }
[webhook]
secrets = ["value:sizing-secret"]
[[pools]]
name = "build"
labels = ["linux"]
instance_types = ["m7i.large", "m7i.2xlarge", "m7i.4xlarge"]
max_runners = 5
sizing = { cpu = [2, 16] }
"#,
    )
    .expect("config");
    WebhookService::new(
        Arc::new(config),
        WebhookSecrets::new(&[SECRET]),
        queue,
        Arc::new(MemoryJobStates::default()),
    )
}

/// GitHub's first `queued` example with these labels, signed.
fn queued_example(labels: &[&str]) -> (Vec<u8>, String) {
    let mut ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued workflow_job example");
    ex.payload["workflow_job"]["labels"] = json!(labels);
    let body = ex.body();
    let sig = sign(SECRET.as_bytes(), &body);
    (body, sig)
}

async fn post(
    service: &WebhookService,
    labels: &[&str],
) -> spotrunner_core::webhook::WebhookResponse {
    let (body, sig) = queued_example(labels);
    service
        .handle(
            &WebhookRequest {
                method: "POST",
                event: Some("workflow_job"),
                delivery: Some("d-sizing"),
                signature: Some(&sig),
                body: &body,
            },
            chrono::Utc::now(),
        )
        .await
}

#[tokio::test]
async fn githubs_example_with_out_of_bounds_sizing_is_ignored_with_its_reason() {
    let queue = Arc::new(MemoryQueue::default());
    let service = webhook(queue.clone());

    let r = post(&service, &["self-hosted", "linux", "spotrunner/cpu=32"]).await;
    assert_eq!(r.status, 202);
    let why = r.body["ignored"].as_str().expect("ignored").to_string();
    assert!(
        why.contains("label \"spotrunner/cpu=32\": 32 vCPUs is outside pool build's bounds: sizing.cpu = [2, 16]"),
        "{why}"
    );
    let r = post(&service, &["self-hosted", "linux", "spotrunner/ram=8"]).await;
    assert!(
        r.body["ignored"]
            .as_str()
            .is_some_and(|w| w.contains("declares no sizing.ram_gib")),
        "{}",
        r.body
    );
    assert!(queue.sent().is_empty(), "nothing enqueued");

    // Within bounds, the same example is queued with its labels.
    let r = post(&service, &["self-hosted", "linux", "spotrunner/cpu=8"]).await;
    assert_eq!(r.body["queued"], json!(true), "{}", r.body);
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].labels.contains(&"spotrunner/cpu=8".to_string()));
}

/// A job asking `spotrunner/cpu=8` in a 2–16 vCPU pool: moto receives a
/// CreateFleet request asking exactly 8 vCPUs, the runner is weighed by its
/// size and registers with the job's sizing label.
#[tokio::test]
async fn a_sized_job_launches_eight_vcpus_on_moto_and_registers_its_label() {
    let w = world_with(
        5,
        Some(20),
        "sizing = { cpu = [2, 16], families = [\"t3\"] }",
    )
    .await;
    let mut msg = w.job(4242, "cpu");
    msg.labels.push("spotrunner/cpu=8".into());
    w.send(&msg.to_json()).await;
    w.settle(1).await;

    let instances = w.instances(None).await;
    assert_eq!(instances.len(), 1, "one VM");
    assert_eq!(tag(&instances[0], tags::SIZE).as_deref(), Some("cpu=8"));

    let fleets = w
        .ec2
        .describe_fleets()
        .send()
        .await
        .expect("describe fleets");
    assert_eq!(fleets.fleets().len(), 1);
    let overrides = fleets.fleets()[0].launch_template_configs()[0].overrides();
    assert!(!overrides.is_empty());
    for o in overrides {
        assert_eq!(o.instance_type(), None);
        let ir = o.instance_requirements().expect("instance requirements");
        let v = ir.v_cpu_count().expect("vCPU count");
        assert_eq!((v.min(), v.max()), (Some(8), Some(8)));
        assert_eq!(ir.allowed_instance_types(), ["t3.*"]);
    }

    // weight 1 is for base_cpu = 2 vCPUs: 8 vCPUs weigh 4.
    let runner = w.ledger.get_runner("sr_cpu-4242-0").await.unwrap().unwrap();
    assert_eq!(runner.weight, 4);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 4);

    let registered = w.github.runners();
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].labels,
        vec!["self-hosted", "linux", "x64", "spotrunner/cpu=8"]
    );
}
