//! Secrets and configuration stay current in a warm Lambda (issue "No queued
//! job is ever lost", item 3), on moto: the webhook built by
//! `spotrunner_webhook::service_from_env` from the SSM configuration document
//! and a SecureString secret, fed GitHub's own examples signed by
//! `@octokit/webhooks-methods`.
//!
//! - A secret rotated in SSM is accepted by the same service object (no
//!   rebuild): the first delivery it refuses makes it read the secrets again.
//! - After that, the old secret is refused, unless the configuration names it
//!   as the previous secret.
//! - `Reloading` around the same builder follows a changed document, and keeps
//!   the one in use when SSM cannot be read.

mod common;

use serde_json::{Value, json};
use spotrunner_aws::reload::Reloading;
use spotrunner_core::job::JobMessage;
use spotrunner_core::webhook::{WebhookRequest, WebhookResponse, WebhookService};
use spotrunner_testkit::examples::{Example, examples, octokit_sign};
use spotrunner_testkit::moto;
use std::collections::BTreeMap;
use std::time::Duration;

const CONFIG: &str = "/sr/config";
const SECRET: &str = "/sr/webhook/secret";
const PREVIOUS: &str = "/sr/webhook/previous";

struct World {
    _moto: moto::SharedMoto,
    sdk: aws_config::SdkConfig,
    ssm: aws_sdk_ssm::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// The document Terraform would write: one pool for each queued example's labels.
fn document(secrets: &[&str], pools: &[(&str, &[&str])]) -> String {
    let pools: Vec<Value> = pools
        .iter()
        .map(|(name, labels)| {
            json!({
                "name": name,
                "labels": labels,
                "launch_template": format!("sr-{name}"),
                "instance_types": ["t3.micro"],
                "max_runners": 3,
            })
        })
        .collect();
    json!({
        "deployment": "sr",
        // GitHub's example payloads are of public repositories, of any owner.
        "allowed_owners": ["*"],
        "allow_public_repositories": true,
        "github": { "auth": { "type": "pat", "token": "ssm:/sr/github/token" } },
        "webhook": { "secrets": secrets.iter().map(|s| format!("ssm:{s}")).collect::<Vec<_>>() },
        "pools": pools,
    })
    .to_string()
}

const BOTH_POOLS: &[(&str, &[&str])] = &[
    ("ubuntu", &["ubuntu-latest"]),
    ("k8s", &["self-hosted", "k8s"]),
];

async fn world() -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = common::create_queue(&sqs, "sr-jobs").await;
    World {
        _moto: moto,
        ssm: aws_sdk_ssm::Client::new(&sdk),
        sdk,
        sqs,
        queue_url,
    }
}

impl World {
    /// Create or overwrite a SecureString parameter (a rotation is an overwrite).
    async fn put(&self, name: &str, value: &str) {
        common::put_secure(&self.ssm, name, value).await;
    }

    /// What Terraform hands the webhook function.
    fn env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            (
                "SPOTRUNNER_CONFIG_PARAMETER".to_string(),
                CONFIG.to_string(),
            ),
            (
                "SPOTRUNNER_JOBS_QUEUE_URL".to_string(),
                self.queue_url.clone(),
            ),
        ]);
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    async fn service(&self) -> WebhookService {
        spotrunner_webhook::service_from_env(&self.sdk, &self.env(&[]))
            .await
            .expect("webhook builds from its environment")
    }

    /// Every message on the queue, removed.
    async fn drain(&self) -> Vec<JobMessage> {
        common::drain_jobs(&self.sqs, &self.queue_url).await
    }
}

/// A queued example and its body.
fn queued() -> (Example, Vec<u8>) {
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example");
    let body = ex.body();
    (ex, body)
}

async fn deliver(service: &WebhookService, body: &[u8], secret: &str) -> WebhookResponse {
    let sig = octokit_sign(secret, &[body.to_vec()]).remove(0);
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        signature: Some(&sig),
        body,
    };
    service.handle(&req, chrono::Utc::now()).await
}

#[tokio::test]
async fn a_secret_rotated_in_ssm_is_accepted_by_the_warm_service_and_the_old_one_refused() {
    let w = world().await;
    w.put(SECRET, "first-webhook-secret-0123456789abcdef").await;
    w.put(CONFIG, &document(&[SECRET], BOTH_POOLS)).await;
    let service = w.service().await;
    let (ex, body) = queued();
    let job_id = ex.payload["workflow_job"]["id"].as_u64();

    let r = deliver(&service, &body, "first-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["queued"], true, "{}", r.body);

    w.put(SECRET, "second-webhook-secret-0123456789abcdef")
        .await;
    let r = deliver(&service, &body, "second-webhook-secret-0123456789abcdef").await;
    assert_eq!(
        r.status, 202,
        "the same service object reads the rotated secret: {}",
        r.body
    );
    assert_eq!(r.body["queued"], true, "{}", r.body);

    let r = deliver(&service, &body, "first-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 401, "the old secret is gone: {}", r.body);
    let r = deliver(&service, &body, "second-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 202, "{}", r.body);

    let sent = w.drain().await;
    assert_eq!(sent.len(), 3, "one message per accepted delivery");
    assert!(sent.iter().all(|m| Some(m.job_id) == job_id));
}

#[tokio::test]
async fn the_old_secret_stays_accepted_when_configured_as_the_previous_one() {
    let w = world().await;
    w.put(SECRET, "first-webhook-secret-0123456789abcdef").await;
    w.put(PREVIOUS, "retired-webhook-secret-0123456789abcdef")
        .await;
    w.put(CONFIG, &document(&[SECRET, PREVIOUS], BOTH_POOLS))
        .await;
    let service = w.service().await;
    let (_, body) = queued();
    assert_eq!(
        deliver(&service, &body, "first-webhook-secret-0123456789abcdef")
            .await
            .status,
        202
    );

    // The documented rotation: the current value moves to the previous
    // parameter, the new one takes its place.
    w.put(PREVIOUS, "first-webhook-secret-0123456789abcdef")
        .await;
    w.put(SECRET, "second-webhook-secret-0123456789abcdef")
        .await;
    let r = deliver(&service, &body, "second-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = deliver(&service, &body, "first-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 202, "the previous secret: {}", r.body);
    let r = deliver(&service, &body, "retired-webhook-secret-0123456789abcdef").await;
    assert_eq!(r.status, 401, "two secrets, not three: {}", r.body);
    assert_eq!(w.drain().await.len(), 3);
}

#[tokio::test]
async fn the_refresh_interval_comes_from_the_environment() {
    let w = world().await;
    w.put(SECRET, "first-webhook-secret-0123456789abcdef").await;
    w.put(CONFIG, &document(&[SECRET], BOTH_POOLS)).await;
    let err = spotrunner_webhook::service_from_env(
        &w.sdk,
        &w.env(&[("SPOTRUNNER_SECRET_REFRESH_SECS", "soon")]),
    )
    .await
    .err()
    .expect("a bad interval is refused")
    .to_string();
    assert!(err.contains("SPOTRUNNER_SECRET_REFRESH_SECS"), "{err}");

    // 0: every refused delivery reads again, so a bad delivery just before the
    // rotation does not hold the new secret back.
    let service = spotrunner_webhook::service_from_env(
        &w.sdk,
        &w.env(&[("SPOTRUNNER_SECRET_REFRESH_SECS", "0")]),
    )
    .await
    .expect("builds");
    let (_, body) = queued();
    assert_eq!(deliver(&service, &body, "garbage").await.status, 401);
    w.put(SECRET, "second-webhook-secret-0123456789abcdef")
        .await;
    assert_eq!(
        deliver(&service, &body, "second-webhook-secret-0123456789abcdef")
            .await
            .status,
        202
    );
    assert_eq!(w.drain().await.len(), 1);
}

#[tokio::test]
async fn a_reloading_webhook_follows_the_document_and_keeps_it_when_ssm_fails() {
    let w = world().await;
    w.put(SECRET, "first-webhook-secret-0123456789abcdef").await;
    w.put(CONFIG, &document(&[SECRET], BOTH_POOLS)).await;
    let (_, body) = queued();
    let env = w.env(&[]);
    let sdk = w.sdk.clone();
    // TTL zero: every `get` rebuilds, as every invocation past the TTL would.
    let service = Reloading::new("webhook", Some(Duration::ZERO), || {
        let (sdk, env) = (sdk.clone(), env.clone());
        async move { spotrunner_webhook::service_from_env(&sdk, &env).await }
    })
    .await
    .expect("first build");
    let r = deliver(
        &*service.get().await,
        &body,
        "first-webhook-secret-0123456789abcdef",
    )
    .await;
    assert_eq!(r.body["queued"], true, "{}", r.body);

    // A new document: no pool serves the example's labels any more.
    w.put(CONFIG, &document(&[SECRET], &[("gpu", &["gpu"])]))
        .await;
    let r = deliver(
        &*service.get().await,
        &body,
        "first-webhook-secret-0123456789abcdef",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        r.body["ignored"]
            .as_str()
            .is_some_and(|s| s.contains("no pool")),
        "the reloaded document routes it: {}",
        r.body
    );

    // The parameter cannot be read: the rebuild fails, the document in use stays.
    w.ssm
        .delete_parameter()
        .name(CONFIG)
        .send()
        .await
        .expect("delete");
    let r = deliver(
        &*service.get().await,
        &body,
        "first-webhook-secret-0123456789abcdef",
    )
    .await;
    assert!(r.body["ignored"].is_string(), "kept: {}", r.body);

    // Readable again: followed again.
    w.put(CONFIG, &document(&[SECRET], BOTH_POOLS)).await;
    let r = deliver(
        &*service.get().await,
        &body,
        "first-webhook-secret-0123456789abcdef",
    )
    .await;
    assert_eq!(r.body["queued"], true, "{}", r.body);
    assert_eq!(w.drain().await.len(), 2);
}

/// A webhook secret anyone could guess lets anyone queue jobs: a short one in
/// SSM stops the cold start (naming the parameter, never the value), and a
/// rotation to a short one is refused by the warm service, which keeps the
/// secret it holds.
#[tokio::test]
async fn a_short_secret_is_refused_at_cold_start_and_at_rotation() {
    let w = world().await;
    w.put(SECRET, "short-secret").await;
    w.put(CONFIG, &document(&[SECRET], BOTH_POOLS)).await;
    let Err(err) = spotrunner_webhook::service_from_env(&w.sdk, &w.env(&[])).await else {
        panic!("a 12-character secret stops the cold start");
    };
    let err = err.to_string();
    assert!(
        err.contains(SECRET) && err.contains("12 characters"),
        "{err}"
    );
    assert!(!err.contains("short-secret"), "{err}");

    let strong = "first-webhook-secret-0123456789abcdef";
    w.put(SECRET, strong).await;
    let service = w.service().await;
    let (_, body) = queued();
    w.put(SECRET, "short-secret").await;
    let r = deliver(&service, &body, "short-secret").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = deliver(&service, &body, strong).await;
    assert_eq!(r.status, 202, "the strong secret is kept: {}", r.body);
    assert_eq!(w.drain().await.len(), 1);
}
