//! The Lambdas' own glue on moto: the webhook's cold start reads its document
//! and secrets in one `GetParameters` call, and an invocation prints the EMF
//! lines of the metrics it counted (webhook, janitor).

mod common;

use serde_json::{Value, json};
use spotrunner_aws::metrics::MetricsLayer;
use spotrunner_testkit::examples::{examples, octokit_sign};
use spotrunner_testkit::fault_proxy::{FaultConfig, FaultProxy};
use spotrunner_testkit::moto;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

const CONFIG: &str = "/sr/config";
const SECRET: &str = "/sr/webhook/secret";
const SECRET_VALUE: &str = "the-webhook-secret-0123456789abcdef";

/// EMF lines a test's subscriber printed.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// This thread's subscriber until the guard drops: the metrics layer for
    /// `function`, printing here.
    fn install(&self, function: &str) -> impl Sized {
        let sink = self.0.clone();
        let layer = MetricsLayer::new(function)
            .with_output(move |l| sink.lock().unwrap().push(l.to_string()));
        tracing_subscriber::registry()
            .with(layer.filtered())
            .set_default()
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .iter()
            .map(|l| serde_json::from_str(l).expect("EMF lines are JSON"))
            .collect()
    }
}

/// The queued `workflow_job` example whose labels the `k8s` pool serves.
fn queued_example() -> (Vec<u8>, Vec<String>) {
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example");
    let labels = ex.payload["workflow_job"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (ex.body(), labels)
}

struct Webhook {
    _moto: moto::SharedMoto,
    moto_url: String,
    queue_url: String,
}

async fn webhook_world(labels: &[String]) -> Webhook {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let document = json!({
        "deployment": "sr",
        // GitHub's example payloads are of public repositories, of any owner.
        "allowed_owners": ["*"],
        "allow_public_repositories": true,
        "github": { "auth": { "type": "pat", "token": "ssm:/sr/github/token" } },
        "webhook": { "secrets": [format!("ssm:{SECRET}")] },
        "pools": [{ "name": "k8s", "labels": labels, "launch_template": "sr-k8s",
                    "instance_types": ["t3.micro"], "max_runners": 3 }],
    });
    ssm.put_parameter()
        .name(CONFIG)
        .value(document.to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    common::put_secure(&ssm, SECRET, SECRET_VALUE).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = common::create_queue(&sqs, "sr-jobs").await;
    Webhook {
        moto_url: moto.url().to_string(),
        _moto: moto,
        queue_url,
    }
}

impl Webhook {
    /// What Terraform hands the webhook, `secrets` = the variable's value.
    fn env(&self, secrets: Option<&str>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            ("SPOTRUNNER_CONFIG_PARAMETER".into(), CONFIG.into()),
            ("SPOTRUNNER_JOBS_QUEUE_URL".into(), self.queue_url.clone()),
            ("SPOTRUNNER_LEDGER_TABLE".into(), "sr-ledger".into()),
        ]);
        if let Some(s) = secrets {
            env.insert("SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS".into(), s.into());
        }
        env
    }
}

/// A Function URL event (payload 2.0) carrying `body`, signed with `secret`.
fn function_url_request(body: &[u8], secret: &str) -> lambda_http::Request {
    let sig = octokit_sign(secret, &[body.to_vec()]).remove(0);
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-github-event": "workflow_job",
            "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            "x-hub-signature-256": sig
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": { "method": "POST", "path": "/", "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "GitHub-Hookshot/1" },
            "requestId": "r", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:10:00:00 +0000", "timeEpoch": 1795000000000u64
        },
        "body": std::str::from_utf8(body).expect("a JSON body"),
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("payload 2.0 event")
}

#[tokio::test]
async fn webhook_cold_start_reads_the_document_and_its_secrets_in_one_call() {
    let (body, labels) = queued_example();
    let w = webhook_world(&labels).await;
    // (variable, GetParameters calls, GetParameter calls)
    let cases = [
        (Some(SECRET), 1, 0),
        // The variable and the document disagree: the missing secret is read alone.
        (Some("/sr/webhook/not-referenced"), 1, 1),
        // No variable: the document, then the secret.
        (None, 0, 2),
    ];
    for (secrets, batched, single) in cases {
        let proxy = FaultProxy::start(&w.moto_url, FaultConfig::new("ssm", 1).rate(0.0)).await;
        let sdk = spotrunner_aws::sdk::local(proxy.url()).await;
        let service = spotrunner_webhook::service_from_env(&sdk, &w.env(secrets))
            .await
            .expect("the webhook starts");
        let calls = (proxy.calls("GetParameters"), proxy.calls("GetParameter"));
        assert_eq!(calls, (batched, single), "{secrets:?}: {}", proxy.summary());
        let resp =
            spotrunner_webhook::handle(&service, function_url_request(&body, SECRET_VALUE)).await;
        assert_eq!(resp.status(), 202, "{secrets:?}");
    }
    let sdk = spotrunner_aws::sdk::local(&w.moto_url).await;
    let drained = common::drain_jobs(&aws_sdk_sqs::Client::new(&sdk), &w.queue_url).await;
    assert_eq!(drained.len(), 3);
}

#[tokio::test]
async fn a_webhook_invocation_prints_its_metrics() {
    let (body, labels) = queued_example();
    let w = webhook_world(&labels).await;
    let sdk = spotrunner_aws::sdk::local(&w.moto_url).await;
    let lines = Lines::default();
    let _default = lines.install("webhook");
    let service = spotrunner_webhook::service_from_env(&sdk, &w.env(Some(SECRET)))
        .await
        .unwrap();

    let resp =
        spotrunner_webhook::handle(&service, function_url_request(&body, SECRET_VALUE)).await;
    assert_eq!(resp.status(), 202);
    let printed = lines.take();
    assert_eq!(printed.len(), 1, "{printed:?}");
    let line = &printed[0];
    assert_eq!(line["deployment"], "sr");
    assert_eq!(line["function"], "webhook");
    assert_eq!(line["pool"], "k8s");
    assert_eq!(line["webhook_accepted"], 1.0);
    assert_eq!(
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["deployment", "function", "pool"]])
    );

    // Two refusals in one invocation each: one line per invocation.
    for _ in 0..2 {
        let resp = spotrunner_webhook::handle(&service, function_url_request(&body, "wrong")).await;
        assert_eq!(resp.status(), 401);
        let printed = lines.take();
        assert_eq!(printed.len(), 1, "{printed:?}");
        assert_eq!(printed[0]["webhook_refused"], 1.0);
        assert_eq!(printed[0]["reason"], "bad_signature");
        assert!(printed[0].get("pool").is_none());
    }
}

#[tokio::test]
async fn a_janitor_invocation_prints_capacity_gauges_per_pool() {
    let w = common::world(2, None).await;
    let lines = Lines::default();
    let _default = lines.install("janitor");
    // One runner's worth of the cpu pool in use.
    let used = spotrunner_core::ports::CapacityUse {
        pools: BTreeMap::from([("cpu".to_string(), 1)]),
        weight: 1,
    };
    spotrunner_core::ports::Ledger::set_capacity(w.ledger.as_ref(), &used)
        .await
        .unwrap();
    let handler = spotrunner_janitor::Handler {
        janitor: w.janitor,
        dry_run: true,
    };
    handler.handle(json!({})).await.expect("a janitor pass");
    let printed = lines.take();
    let gauge = |pool: &str, name: &str| {
        printed
            .iter()
            .find(|l| l["pool"] == pool && l.get(name).is_some())
            .unwrap_or_else(|| panic!("no {name} for {pool}: {printed:?}"))[name]
            .clone()
    };
    assert_eq!(gauge("cpu", "capacity_max"), 2.0);
    assert_eq!(gauge("gpu", "capacity_max"), 50.0);
    assert_eq!(gauge("cpu", "capacity_used"), 1.0);
    assert_eq!(gauge("gpu", "capacity_used"), 0.0);
    assert!(printed.iter().all(|l| l["function"] == "janitor"));
}
