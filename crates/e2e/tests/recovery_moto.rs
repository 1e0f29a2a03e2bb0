//! The recovery Lambda on moto, built by `spotrunner_recovery::handler_from_env`
//! from the environment Terraform hands it, against the fake GitHub over HTTP
//! (which delivers webhooks itself, keeps a delivery log and redelivers only
//! when asked). The webhook is the real Lambda glue (`spotrunner_webhook`)
//! behind a small HTTP server that can be made to answer 503.
//!
//! - A `workflow_job` delivery the webhook answered 503 is redelivered once by
//!   the redelivery task and lands on the jobs queue once; the next run and a
//!   cold start (the checkpoint is in DynamoDB) redeliver nothing more.
//! - The sweep enqueues a queued job that was never delivered, once; a job
//!   the ledger knows is left alone.
//! - The runner-cache task, given the runner bucket, fills `runner-cache/`
//!   with both tarballs of the pinned release and their sidecars; without
//!   the bucket it is skipped.
//! - A bad event is refused, naming what is expected.

mod common;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use spotrunner_core::job::JobMessage;
use spotrunner_core::ports::{Ledger, RunnerScope};
use spotrunner_testkit::fake_github::{APP_ID, APP_PRIVATE_KEY_PEM, FakeGitHub, FakeWorkflowJob};
use spotrunner_testkit::moto;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SECRET: &str = "recovery-webhook-secret-0123456789abcdef";
const REPO: &str = "octo-org/repo";

struct World {
    _moto: moto::SharedMoto,
    sdk: aws_config::SdkConfig,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    github: FakeGitHub,
    /// While set, the webhook answers 503 (as when SQS is unreachable).
    down: Arc<AtomicBool>,
    env: BTreeMap<String, String>,
}

async fn world() -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = common::create_queue(&sqs, "sr-jobs").await;
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger")
        .await
        .expect("ledger table");
    let github = FakeGitHub::start().await;
    let installation = github.add_installation(RunnerScope::Org {
        org: "octo-org".into(),
    });
    github.add_repository(REPO, "Organization", Some(installation));
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    common::put_secure(&ssm, "/sr/github/key", APP_PRIVATE_KEY_PEM).await;
    common::put_secure(&ssm, "/sr/webhook/secret", SECRET).await;
    let config = json!({
        "deployment": "sr",
        // GitHub's example payloads are of public repositories, of any owner.
        "allowed_owners": ["*"],
        "allow_public_repositories": true,
        "github": {
            "api_url": github.url(),
            "auth": { "type": "app", "app_id": APP_ID.parse::<u64>().unwrap(), "private_key": "ssm:/sr/github/key" },
        },
        "webhook": { "secrets": ["ssm:/sr/webhook/secret"] },
        "pools": [{
            "name": "linux", "labels": ["linux"], "launch_template": "sr-linux",
            "instance_types": ["t3.micro"], "max_runners": 3,
        }],
        "recovery": { "sweep": { "min_age_secs": 60 } },
    });
    common::put_secure(&ssm, "/sr/config", &config.to_string()).await;
    let env = BTreeMap::from([
        (
            "SPOTRUNNER_CONFIG_PARAMETER".to_string(),
            "/sr/config".to_string(),
        ),
        ("SPOTRUNNER_JOBS_QUEUE_URL".to_string(), queue_url.clone()),
        (
            "SPOTRUNNER_LEDGER_TABLE".to_string(),
            "sr-ledger".to_string(),
        ),
    ]);
    let w = World {
        _moto: moto,
        sdk,
        sqs,
        queue_url,
        github,
        down: Arc::new(AtomicBool::new(false)),
        env,
    };
    let url = w.serve_webhook().await;
    w.github.set_webhook(&url, SECRET);
    w
}

impl World {
    /// The webhook Lambda's glue behind HTTP, built from its own environment.
    async fn serve_webhook(&self) -> String {
        let service = Arc::new(
            spotrunner_webhook::service_from_env(&self.sdk, &self.env)
                .await
                .expect("webhook builds"),
        );
        let down = self.down.clone();
        let app = axum::Router::new().route(
            "/webhook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let service = service.clone();
                let down = down.clone();
                async move {
                    if down.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, String::from("{}"));
                    }
                    let mut req = lambda_http::http::Request::builder()
                        .method("POST")
                        .uri("/webhook");
                    for (k, v) in &headers {
                        req = req.header(k, v);
                    }
                    let req = req
                        .body(lambda_http::Body::Binary(body.to_vec()))
                        .expect("request");
                    let resp = spotrunner_webhook::handle(&service, req).await;
                    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
                    let body = match resp.body() {
                        lambda_http::Body::Text(t) => t.clone(),
                        _ => String::new(),
                    };
                    (status, body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/webhook")
    }

    async fn recovery(&self) -> spotrunner_recovery::Handler {
        spotrunner_recovery::handler_from_env(&self.sdk, &self.env)
            .await
            .expect("recovery builds from its environment")
    }

    /// Every job message on the queue, removed.
    async fn drain(&self) -> Vec<JobMessage> {
        common::drain_jobs(&self.sqs, &self.queue_url).await
    }
}

fn queued_payload(job: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "queued",
        "workflow_job": {
            "id": job, "run_id": job + 1_000_000, "run_attempt": 1, "status": "queued",
            "labels": ["self-hosted", "linux"], "created_at": chrono::Utc::now().to_rfc3339(),
        },
        "repository": { "full_name": REPO, "owner": { "login": "octo-org", "type": "Organization" } },
    }))
    .unwrap()
}

fn ids(msgs: &[JobMessage]) -> Vec<u64> {
    msgs.iter().map(|m| m.job_id).collect()
}

#[tokio::test]
async fn a_delivery_answered_503_is_redelivered_once_and_lands_on_the_queue_once() {
    let w = world().await;
    w.down.store(true, Ordering::SeqCst);
    assert_eq!(
        w.github
            .deliver("workflow_job", &queued_payload(5001))
            .await,
        503
    );
    w.down.store(false, Ordering::SeqCst);
    assert_eq!(
        w.github
            .deliver("workflow_job", &queued_payload(5002))
            .await,
        202
    );
    assert_eq!(ids(&w.drain().await), [5002]);

    let recovery = w.recovery().await;
    let report = recovery
        .handle(json!({ "task": "redelivery" }))
        .await
        .expect("redelivery run");
    assert_eq!(report["redelivered"], 1, "{report}");
    assert_eq!(report["failed_found"], 1, "{report}");
    // GitHub redelivers shortly after accepting the request (the fake at once).
    let mut msgs = Vec::new();
    for _ in 0..50 {
        msgs.extend(w.drain().await);
        if !msgs.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ids(&msgs), [5001], "the redelivered job is enqueued");
    assert_eq!(w.github.redelivery_requests(), 1);

    // The next run sees the redelivery succeed; a cold start reads the
    // checkpoint from DynamoDB: nothing is asked for again.
    let report = recovery
        .handle(json!({ "task": "redelivery" }))
        .await
        .unwrap();
    assert_eq!(report["recovered"], 1, "{report}");
    assert_eq!(report["redelivered"], 0, "{report}");
    let cold = w.recovery().await;
    let report = cold.handle(json!({ "task": "redelivery" })).await.unwrap();
    assert_eq!(report["redelivered"], 0, "{report}");
    assert_eq!(w.github.redelivery_requests(), 1);
    assert!(w.drain().await.is_empty());
}

#[tokio::test]
async fn the_sweep_enqueues_a_job_never_delivered_once_and_leaves_known_jobs() {
    let w = world().await;
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    for job in [6001, 6002] {
        w.github.add_workflow_job(
            REPO,
            FakeWorkflowJob::new(
                job + 1_000_000,
                job,
                "queued",
                &["self-hosted", "linux"],
                old,
            ),
        );
    }
    // 6002 is known to the ledger (its webhook came and it was claimed).
    let ledger = spotrunner_aws::dynamodb::DynamoLedger::new(&w.sdk, "sr-ledger");
    let known = spotrunner_core::ports::ledger_contract::job_message(6002, "linux", 0);
    ledger
        .claim_job(&known, chrono::Utc::now(), chrono::Duration::minutes(5))
        .await
        .expect("claim");

    let recovery = w.recovery().await;
    let report = recovery.handle(json!({ "task": "sweep" })).await.unwrap();
    assert_eq!(report["enqueued"], 1, "{report}");
    assert_eq!(report["known"], 1, "{report}");
    let msgs = w.drain().await;
    assert_eq!(ids(&msgs), [6001], "{report}");
    assert_eq!(msgs[0].delivery_id.as_deref(), Some("sweep"));
    assert_eq!(msgs[0].repository, REPO);
    assert_eq!(msgs[0].pool, "linux");

    // Still queued on GitHub, still waiting on our queue: not enqueued again,
    // also after a cold start.
    let report = w
        .recovery()
        .await
        .handle(json!({ "task": "sweep" }))
        .await
        .unwrap();
    assert_eq!(report["enqueued"], 0, "{report}");
    assert!(w.drain().await.is_empty());
}

#[tokio::test]
async fn an_event_without_a_task_is_refused_naming_the_tasks() {
    let w = world().await;
    let err = w
        .recovery()
        .await
        .handle(Value::Null)
        .await
        .expect_err("no task");
    assert!(err.to_string().contains("redelivery"), "{err}");
}

#[tokio::test]
async fn the_runner_cache_task_fills_the_bucket_given_in_the_environment() {
    let mut w = world().await;
    let skipped = w
        .recovery()
        .await
        .handle(json!({ "task": "runner-cache" }))
        .await
        .unwrap();
    assert!(skipped["skipped"].is_string(), "{skipped}");

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&w.sdk)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket().bucket("sr-runner").send().await.unwrap();
    w.env
        .insert("SPOTRUNNER_BUCKET".to_string(), "sr-runner".to_string());
    // The configuration pins 2.329.0 (the default); a newer one exists.
    let files = |v: &str| {
        ["x64", "arm64"].map(|a| {
            (
                format!("actions-runner-linux-{a}-{v}.tar.gz"),
                format!("{a} {v}").into_bytes(),
            )
        })
    };
    // Published days before the task runs (it runs at the wall clock): how far
    // behind the pin is stays the same in any year.
    let days_ago = |d: i64| (chrono::Utc::now() - chrono::Duration::days(d)).to_rfc3339();
    for (tag, at) in [("v2.329.0", days_ago(97)), ("v2.330.0", days_ago(17))] {
        let f = files(tag.trim_start_matches('v'));
        let f: Vec<(&str, Vec<u8>)> = f.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        w.github.publish_release("actions/runner", tag, &at, &f);
    }
    let report = w
        .recovery()
        .await
        .handle(json!({ "task": "runner-cache" }))
        .await
        .unwrap();
    assert_eq!(report["version"], "2.329.0", "{report}");
    assert_eq!(report["latest_version"], "2.330.0", "{report}");
    assert_eq!(report["behind_days"], 17, "{report}");
    let listed = s3
        .list_objects_v2()
        .bucket("sr-runner")
        .send()
        .await
        .unwrap();
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort();
    // Every pool of this configuration is x64: no arm64 tarball is fetched.
    assert_eq!(
        keys,
        [
            "runner-cache/actions-runner-linux-x64-2.329.0.tar.gz",
            "runner-cache/actions-runner-linux-x64-2.329.0.tar.gz.sha256",
        ],
        "{report}"
    );
}
