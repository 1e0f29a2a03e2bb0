//! The webhook handler with the real SQS adapter against moto, fed GitHub's own
//! examples (`@octokit/webhooks-examples`) signed by `@octokit/webhooks-methods`.

mod common;

use aws_sdk_sqs::Client;
use serde_json::Value;
use spotrunner_aws::sqs::SqsJobQueue;
use spotrunner_core::Config;
use spotrunner_core::job::JobMessage;
use spotrunner_core::ports::NoJobStateSink;
use spotrunner_core::webhook::{WebhookRequest, WebhookResponse, WebhookSecrets, WebhookService};
use spotrunner_testkit::examples::{examples, octokit_sign};
use spotrunner_testkit::moto;
use std::sync::Arc;

const CURRENT: &str = "current-secret";
const PREVIOUS: &str = "previous-secret";

fn config() -> Config {
    Config::from_toml(
        r#"
deployment = "sr"
# GitHub's example payloads are of public repositories, of any owner.
allowed_owners = ["*"]
allow_public_repositories = true
[github]
auth = { type = "pat", token = "env:GH_TOKEN" }
[webhook]
secrets = ["value:current-secret", "value:previous-secret"]
[[pools]]
name = "ubuntu"
labels = ["ubuntu-latest"]
max_runners = 3
[[pools]]
name = "k8s"
labels = ["k8s", "linux"]
max_runners = 3
[[pools]]
name = "k8s-only"
labels = ["k8s"]
max_runners = 3
"#,
    )
    .expect("test config is valid")
}

struct Env {
    _moto: moto::SharedMoto,
    sqs: Client,
    queue_url: String,
    service: WebhookService,
}

async fn env() -> Env {
    env_with(config()).await
}

async fn env_with(cfg: Config) -> Env {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = Client::new(&sdk);
    let queue_url = common::create_queue(&sqs, "sr-jobs").await;
    let service = WebhookService::new(
        Arc::new(cfg),
        WebhookSecrets::new(&[CURRENT, PREVIOUS]),
        Arc::new(SqsJobQueue::new(&sdk, &queue_url)),
        Arc::new(NoJobStateSink),
    );
    Env {
        _moto: moto,
        sqs,
        queue_url,
        service,
    }
}

impl Env {
    async fn post(&self, event: &str, body: &[u8], signature: Option<&str>) -> WebhookResponse {
        let req = WebhookRequest {
            method: "POST",
            event: Some(event),
            delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            signature,
            body,
        };
        self.service.handle(&req, chrono::Utc::now()).await
    }

    /// Every message on the queue, removed.
    async fn drain(&self) -> Vec<JobMessage> {
        common::drain_jobs(&self.sqs, &self.queue_url).await
    }

    async fn assert_queue_empty(&self) {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("attributes");
        let n = attrs
            .attributes()
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .cloned();
        assert_eq!(n.as_deref(), Some("0"), "queue must be empty");
        assert!(self.drain().await.is_empty(), "queue must be empty");
    }
}

fn expected_pool(labels: &[Value]) -> &'static str {
    let labels: Vec<&str> = labels.iter().filter_map(Value::as_str).collect();
    match labels.as_slice() {
        ["ubuntu-latest"] => "ubuntu",
        ["self-hosted", "k8s"] => "k8s-only",
        other => panic!("test config has no expectation for {other:?}"),
    }
}

#[tokio::test]
async fn every_example_parses_and_queued_ones_arrive_on_sqs_field_by_field() {
    let env = env().await;
    let jobs = examples("workflow_job");
    let pings = examples("ping");
    assert!(
        jobs.len() >= 8,
        "expected the package's workflow_job examples"
    );
    assert!(pings.len() >= 4, "expected the package's ping examples");
    let all: Vec<_> = jobs.iter().chain(pings.iter()).collect();
    let bodies: Vec<Vec<u8>> = all.iter().map(|e| e.body()).collect();
    let sigs = octokit_sign(CURRENT, &bodies);

    let mut queued = Vec::new();
    for ((ex, body), sig) in all.iter().zip(&bodies).zip(&sigs) {
        let r = env.post(&ex.event, body, Some(sig)).await;
        let what = format!("{} {} {:?}: {}", ex.source, ex.event, ex.action(), r.body);
        match (ex.event.as_str(), ex.action()) {
            ("ping", _) => assert_eq!(r.status, 200, "{what}"),
            ("workflow_job", Some("queued")) => {
                assert_eq!(r.status, 202, "{what}");
                let pool = expected_pool(ex.payload["workflow_job"]["labels"].as_array().unwrap());
                assert_eq!(r.body["queued"], true, "{what}");
                assert_eq!(r.body["pool"], pool, "{what}");
                queued.push(ex);
            }
            ("workflow_job", _) => {
                assert_eq!(r.status, 202, "{what}");
                assert!(r.body.get("queued").is_none(), "{what}");
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(queued.len(), 2, "the package ships two queued examples");

    let mut messages = env.drain().await;
    assert_eq!(
        messages.len(),
        queued.len(),
        "one message per queued example"
    );
    messages.sort_by_key(|m| m.job_id);
    queued.sort_by_key(|e| e.payload["workflow_job"]["id"].as_u64());
    for (m, ex) in messages.iter().zip(queued) {
        let p = &ex.payload;
        let j = &p["workflow_job"];
        assert_eq!(m.version, 1);
        assert_eq!(Some(m.job_id), j["id"].as_u64());
        assert_eq!(Some(m.run_id), j["run_id"].as_u64());
        assert_eq!(Some(m.run_attempt as u64), j["run_attempt"].as_u64());
        assert_eq!(
            Some(m.repository.as_str()),
            p["repository"]["full_name"].as_str()
        );
        assert_eq!(
            Some(m.owner.as_str()),
            p["repository"]["owner"]["login"].as_str()
        );
        assert_eq!(
            Some(m.owner_type.as_str()),
            p["repository"]["owner"]["type"].as_str()
        );
        assert_eq!(m.installation_id, p["installation"]["id"].as_u64());
        let labels: Vec<&str> = j["labels"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(m.labels, labels);
        assert_eq!(m.pool, expected_pool(j["labels"].as_array().unwrap()));
        assert_eq!(
            m.delivery_id.as_deref(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
        );
        let created: chrono::DateTime<chrono::Utc> =
            j["created_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(m.queued_at, Some(created));
        assert!(m.received_at > created);
        assert_eq!(m.launch_attempt, 0);
    }
}

#[tokio::test]
async fn bad_signatures_get_401_and_enqueue_nothing() {
    let env = env().await;
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example");
    let body = ex.body();
    let good = octokit_sign(CURRENT, std::slice::from_ref(&body)).remove(0);
    let wrong_secret = octokit_sign("not-the-secret", std::slice::from_ref(&body)).remove(0);
    let mut tampered = body.clone();
    let pos = tampered.len() / 2;
    tampered[pos] = if tampered[pos] == b'a' { b'b' } else { b'a' };
    let non_hex = format!("sha256={}", "zz".repeat(32));
    let truncated = good[..good.len() - 2].to_string();
    let sha1_only = "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6".to_string();

    assert_eq!(
        env.post("workflow_job", &tampered, Some(&good))
            .await
            .status,
        401,
        "tampered body"
    );
    assert_eq!(
        env.post("workflow_job", &body, Some(&wrong_secret))
            .await
            .status,
        401,
        "wrong secret"
    );
    assert_eq!(
        env.post("workflow_job", &body, None).await.status,
        401,
        "missing header"
    );
    assert_eq!(
        env.post("workflow_job", &body, Some(&sha1_only))
            .await
            .status,
        401,
        "sha1 only"
    );
    assert_eq!(
        env.post("workflow_job", &body, Some(&non_hex)).await.status,
        401,
        "non-hex"
    );
    assert_eq!(
        env.post("workflow_job", &body, Some(&truncated))
            .await
            .status,
        401,
        "truncated"
    );
    env.assert_queue_empty().await;

    // The same body with the right signature does go through: the refusals above
    // were about the signature alone.
    assert_eq!(
        env.post("workflow_job", &body, Some(&good)).await.status,
        202
    );
    assert_eq!(env.drain().await.len(), 1);
}

#[tokio::test]
async fn oversized_non_json_and_wrong_method_change_nothing() {
    let env = env().await;
    let big = vec![b'{'; 25 * 1024 * 1024 + 1];
    let sig = octokit_sign(CURRENT, &[b"not json".to_vec()]).remove(0);
    assert_eq!(env.post("workflow_job", &big, None).await.status, 413);
    assert_eq!(
        env.post("workflow_job", b"not json", Some(&sig))
            .await
            .status,
        400
    );
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .unwrap();
    let body = ex.body();
    let good = octokit_sign(CURRENT, std::slice::from_ref(&body)).remove(0);
    let req = WebhookRequest {
        method: "PUT",
        event: Some("workflow_job"),
        delivery: None,
        signature: Some(&good),
        body: &body,
    };
    assert_eq!(
        env.service.handle(&req, chrono::Utc::now()).await.status,
        405
    );
    env.assert_queue_empty().await;
}

#[tokio::test]
async fn previous_secret_accepted_during_rotation_a_third_is_not() {
    let env = env().await;
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .unwrap();
    let body = ex.body();
    let prev = octokit_sign(PREVIOUS, std::slice::from_ref(&body)).remove(0);
    let third = octokit_sign("an-older-secret", std::slice::from_ref(&body)).remove(0);
    assert_eq!(
        env.post("workflow_job", &body, Some(&third)).await.status,
        401
    );
    env.assert_queue_empty().await;
    assert_eq!(
        env.post("workflow_job", &body, Some(&prev)).await.status,
        202
    );
    assert_eq!(env.drain().await.len(), 1);
}

/// GitHub's own queued examples are of public repositories: by default (no
/// `allow_public_repositories`) they are ignored and nothing is enqueued.
#[tokio::test]
async fn githubs_public_examples_are_ignored_by_default() {
    let mut cfg = config();
    cfg.allow_public_repositories = false;
    let env = env_with(cfg).await;
    env.drain().await;
    let queued: Vec<_> = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .collect();
    assert!(!queued.is_empty());
    for ex in &queued {
        assert_eq!(ex.payload["repository"]["private"], false, "{}", ex.source);
        let body = ex.body();
        let sig = octokit_sign(CURRENT, std::slice::from_ref(&body)).remove(0);
        let r = env.post("workflow_job", &body, Some(&sig)).await;
        assert_eq!(r.status, 202, "{}", r.body);
        let said = r.body["ignored"].as_str().unwrap_or_default();
        assert!(said.contains("is public"), "{}", r.body);
    }
    env.assert_queue_empty().await;
}
