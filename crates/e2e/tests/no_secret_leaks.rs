//! No secret leaves its place: one job end to end on the real adapters (moto +
//! the fake GitHub, App auth) — signed `queued` delivery → webhook → SQS →
//! create-runner → bootstrap → `in_progress` → SSM Success → stop-runner — with
//! every log line captured at TRACE. Then every log line, EC2 tag, SSM
//! parameter tag, SSM command parameter, queued message and ledger item is
//! searched for the secrets of the run: the GitHub App private key, every
//! installation token and JIT config the fake GitHub issued, and the webhook
//! secret. The JIT config itself must have reached its SecureString parameter.

mod common;

use common::*;
use spotrunner_aws::sqs::SqsJobQueue;
use spotrunner_core::ports::{Ledger, RunnerState};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_core::webhook::{WebhookRequest, WebhookSecrets, WebhookService};
use spotrunner_testkit::examples::{examples, octokit_sign};
use spotrunner_testkit::fake_github;
use std::io::Write;
use std::sync::{Arc, Mutex};

const WEBHOOK_SECRET: &str = "whsec-3f9c2a71d4e8b605-never-logged";

/// Every log line of the process, as the Lambdas would print them (JSON).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every message on a queue, received and made visible again at once.
async fn peek(w: &World, url: &str) -> Vec<String> {
    let out = w
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    out.messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_string))
        .collect()
}

/// Every string a place holds, one per line, for searching.
#[derive(Default)]
struct Places(Vec<(String, String)>);

impl Places {
    fn add(&mut self, place: &str, text: impl Into<String>) {
        self.0.push((place.to_string(), text.into()));
    }

    fn assert_free_of(&self, secrets: &[(String, String)]) {
        for (place, text) in &self.0 {
            for (what, secret) in secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} found in {place}: {}",
                    text.chars().take(200).collect::<String>()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_end_to_end_leaves_no_secret_in_logs_tags_messages_or_ledger() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(move || writer.clone())
        .init();

    let w = world(10, None).await;
    let sdk = spotrunner_aws::sdk::local(w._moto.url()).await;
    let webhook = WebhookService::new(
        w.config.clone(),
        WebhookSecrets::new(&[WEBHOOK_SECRET]),
        Arc::new(SqsJobQueue::new(&sdk, w.jobs_url.clone())),
        w.ledger.clone(),
    );
    let mut places = Places::default();

    // 1. GitHub's queued example, for our org, pool and installation.
    let example = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example");
    let job_id = 777_001;
    let mut p = example.payload.clone();
    p["workflow_job"]["id"] = job_id.into();
    p["workflow_job"]["labels"] = serde_json::json!(["self-hosted", "linux", "x64"]);
    p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
    p["repository"]["full_name"] = "octo-org/app".into();
    p["repository"]["owner"]["login"] = "octo-org".into();
    p["repository"]["owner"]["type"] = "Organization".into();
    p["installation"] = serde_json::json!({ "id": w.installation });
    let post = |payload: serde_json::Value| {
        let webhook = &webhook;
        async move {
            let body = serde_json::to_vec(&payload).unwrap();
            let sig = octokit_sign(WEBHOOK_SECRET, std::slice::from_ref(&body)).remove(0);
            let req = WebhookRequest {
                method: "POST",
                event: Some("workflow_job"),
                delivery: Some("d-1"),
                signature: Some(&sig),
                body: &body,
            };
            webhook.handle(&req, chrono::Utc::now()).await
        }
    };
    let resp = post(p.clone()).await;
    assert_eq!(resp.status, 202, "{:?}", resp.body);

    // 2. create-runner, then the bootstrap step; each queued message is read first.
    for body in peek(&w, &w.jobs_url).await {
        places.add("jobs queue message", body);
    }
    w.pump(JOBS, 1).await;
    let boot = peek(&w, &w.boot_url).await;
    assert!(!boot.is_empty(), "a bootstrap message was queued");
    for body in boot {
        places.add("bootstrap queue message", body);
    }
    w.settle(1).await;
    let runner = w.ledger.list_runners().await.unwrap().remove(0);
    assert_eq!(runner.state, RunnerState::Bootstrapped);
    let instance = runner.instance_id.clone().unwrap();

    // The JIT config is where it belongs: its SecureString parameter, bound to
    // the instance; and it is one the fake GitHub issued.
    let stored = w
        .ssm
        .get_parameter()
        .name(&runner.jit_parameter)
        .with_decryption(true)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap();
    assert_eq!(stored.r#type().map(|t| t.as_str()), Some("SecureString"));
    let jit = stored.value().unwrap().to_string();
    assert!(w.github.issued_secrets().contains(&jit));
    let param_tags = w
        .ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(&runner.jit_parameter)
        .send()
        .await
        .unwrap();
    for t in param_tags.tag_list() {
        places.add("JIT parameter tag", format!("{}={}", t.key(), t.value()));
    }
    assert!(
        param_tags
            .tag_list()
            .iter()
            .any(|t| t.key() == "spotrunner:instance-arn"
                && t.value() == format!("{INSTANCE_ARN_PREFIX}{instance}"))
    );

    // 3. GitHub hands the job to the runner; then the command succeeds.
    let mut started = p.clone();
    started["action"] = "in_progress".into();
    started["workflow_job"]["status"] = "in_progress".into();
    started["workflow_job"]["runner_name"] = runner.name.clone().into();
    assert_eq!(post(started).await.status, 202);
    let event = StopEvent::CommandStatus {
        instance_id: instance.clone(),
        command_id: runner.command_id.clone().unwrap(),
        document: "sr-runner".into(),
        status: "Success".into(),
    };
    w.stop
        .handle(event.to_eventbridge())
        .await
        .expect("stopped");
    let ended = w.ledger.get_runner(&runner.name).await.unwrap().unwrap();
    assert_eq!(ended.state, RunnerState::Released);

    // 4. Collect every place a secret must never be.
    places.add(
        "log lines",
        String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string(),
    );
    let reservations = w.ec2.describe_instances().send().await.unwrap();
    for i in reservations
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
    {
        for t in i.tags() {
            places.add(
                "EC2 tag",
                format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")),
            );
        }
    }
    let commands = w.ssm.list_commands().send().await.unwrap();
    assert!(!commands.commands().is_empty());
    for c in commands.commands() {
        places.add("SSM command", format!("{c:?}"));
    }
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name("sr-ledger")
        .send()
        .await
        .unwrap();
    assert!(!items.items().is_empty());
    for item in items.items() {
        places.add("ledger item", format!("{item:?}"));
    }
    for body in peek(&w, &w.jobs_url).await {
        places.add("jobs queue message", body);
    }

    // 5. The secrets of this run.
    let mut secrets: Vec<(String, String)> = w
        .github
        .issued_secrets()
        .into_iter()
        .map(|s| ("a GitHub-issued credential".to_string(), s))
        .collect();
    assert!(
        secrets.iter().any(|(_, s)| s == &jit) && secrets.len() >= 2,
        "a JIT config and an installation token were issued"
    );
    for line in fake_github::APP_PRIVATE_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
    {
        secrets.push(("the GitHub App private key".into(), line.to_string()));
    }
    secrets.push(("the webhook secret".into(), WEBHOOK_SECRET.into()));
    // The search can fail: the captured logs are not empty and do name the job.
    let log_text = &places.0.iter().find(|(p, _)| p == "log lines").unwrap().1;
    assert!(log_text.contains(&job_id.to_string()), "logs were captured");
    places.assert_free_of(&secrets);
}
