//! The Terraform module's wiring, exercised: after `scripts/terraform-check.sh`
//! applies `terraform/examples/local` to moto, this test builds the real
//! handlers with exactly the environment the module hands each Lambda (the
//! `lambda_environment` output) and the configuration document it stored in SSM,
//! then drives one signed queued job through webhook → create-runner →
//! bootstrap → dlq-mover (a bootstrap step and the SSM Success event, injected
//! into their DLQs, go back to the bootstrap and stop-events queues) →
//! create-runner (the step, a no-op now) and stop-runner (the event), ending
//! with the instance terminated. Only the GitHub API URL in the stored
//! document is pointed at the test's fake GitHub (the real one is out of reach
//! here). The queues' wiring is read back from SQS: each queue's DLQ and
//! receive count, the stop-events queue's visibility timeout and its policy
//! (only the stop-runner rules may send).
//!
//! Run by `scripts/terraform-check.sh` (it exports `SPOTRUNNER_TF_OUTPUTS`):
//! `cargo test -p spotrunner-e2e --test terraform_deployed -- --ignored`.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};
use spotrunner_aws::runtime::EnvSource;
use spotrunner_core::dlq_mover::DlqKind;
use spotrunner_core::ports::{BootstrapMessage, JobState, Ledger, RunnerState};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_core::webhook::sign;
use spotrunner_testkit::examples::examples;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::collections::BTreeMap;
use std::time::Duration;

fn outputs() -> Value {
    let path = std::env::var("SPOTRUNNER_TF_OUTPUTS")
        .expect("SPOTRUNNER_TF_OUTPUTS names `terraform output -json` of examples/local (scripts/terraform-check.sh sets it)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("outputs JSON")
}

fn out<'a>(o: &'a Value, name: &str) -> &'a Value {
    o.get(name)
        .and_then(|v| v.get("value"))
        .unwrap_or_else(|| panic!("output {name} missing"))
}

fn env_of(o: &Value, function: &str) -> BTreeMap<String, String> {
    let env = out(o, "lambda_environment")
        .get(function)
        .unwrap_or_else(|| panic!("no environment for {function}"));
    serde_json::from_value(env.clone()).expect("env is a string map")
}

async fn parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> String {
    ssm.get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("parameter {name}: {e:?}"))
        .parameter
        .and_then(|p| p.value)
        .unwrap()
}

fn http_api_event(body: &[u8], signature: &str) -> String {
    json!({
        "version": "2.0", "routeKey": "POST /webhook", "rawPath": "/webhook", "rawQueryString": "",
        "headers": {
            "content-type": "application/json", "x-github-event": "workflow_job",
            "x-github-delivery": "tf-deployed-1", "x-hub-signature-256": signature
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "api", "http": { "method": "POST", "path": "/webhook", "protocol": "HTTP/1.1",
            "sourceIp": "192.30.252.1", "userAgent": "GitHub-Hookshot/1" },
            "requestId": "r", "routeKey": "POST /webhook", "stage": "$default",
            "time": "24/Nov/2026:08:00:00 +0000", "timeEpoch": 1795000000000u64
        },
        "body": String::from_utf8(body.to_vec()).unwrap(), "isBase64Encoded": false
    })
    .to_string()
}

/// Receive what is on `url` (waiting up to `wait` for delayed messages) as the
/// SQS event Lambda's poller would deliver, and delete it.
async fn take(sqs: &aws_sdk_sqs::Client, url: &str, wait: Duration) -> SqsEvent {
    let name = url.rsplit('/').next().unwrap();
    let deadline = std::time::Instant::now() + wait;
    loop {
        let r = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages.unwrap_or_default();
        if !msgs.is_empty() {
            let mut event = SqsEvent::default();
            for m in &msgs {
                let mut rec = SqsMessage::default();
                rec.message_id = m.message_id.clone();
                rec.receipt_handle = m.receipt_handle.clone();
                rec.body = m.body.clone();
                rec.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:123456789012:{name}"));
                event.records.push(rec);
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
            return event;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing arrived on {name}"
        );
    }
}

async fn queue_attributes(sqs: &aws_sdk_sqs::Client, url: &str) -> BTreeMap<String, String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap_or_else(|e| panic!("attributes of {url}: {e:?}"))
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect()
}

/// (dead-letter target ARN, maxReceiveCount) of a queue.
fn redrive(attrs: &BTreeMap<String, String>) -> (String, u64) {
    let policy: Value = serde_json::from_str(attrs.get("RedrivePolicy").expect("RedrivePolicy"))
        .expect("RedrivePolicy is JSON");
    let count = match &policy["maxReceiveCount"] {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("maxReceiveCount {other}"),
    };
    (
        policy["deadLetterTargetArn"].as_str().unwrap().to_string(),
        count,
    )
}

#[tokio::test]
#[ignore = "needs the examples/local deployment: run by scripts/terraform-check.sh"]
async fn the_deployed_queues_redrive_into_their_own_dlqs() {
    let o = outputs();
    let moto = out(&o, "moto_endpoint").as_str().unwrap().to_string();
    let sdk = spotrunner_aws::sdk::local(&moto).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = |name: &str| out(&o, name).as_str().unwrap().to_string();
    let mut arn = BTreeMap::new();
    for q in [
        "jobs_queue_url",
        "dlq_url",
        "bootstrap_queue_url",
        "bootstrap_dlq_url",
        "stop_events_queue_url",
        "stop_events_dlq_url",
    ] {
        arn.insert(q, queue_attributes(&sqs, &url(q)).await["QueueArn"].clone());
    }
    let jobs = queue_attributes(&sqs, &url("jobs_queue_url")).await;
    assert_eq!(redrive(&jobs), (arn["dlq_url"].clone(), 3));
    let boot = queue_attributes(&sqs, &url("bootstrap_queue_url")).await;
    assert_eq!(
        redrive(&boot).0,
        arn["bootstrap_dlq_url"],
        "the bootstrap queue has its own DLQ, not the jobs DLQ"
    );
    let stop = queue_attributes(&sqs, &url("stop_events_queue_url")).await;
    let (dlq, count) = redrive(&stop);
    assert_eq!(dlq, arn["stop_events_dlq_url"]);
    assert!(count >= 10, "a failing stop event is retried {count} times");
    let visibility: u64 = stop["VisibilityTimeout"].parse().unwrap();
    assert!(
        visibility >= 6 * 60,
        "visibility {visibility} s: at least 6x stop-runner's 60 s"
    );

    // Only the three stop-runner rules may send to the stop-events queue and its DLQ.
    let rules: Vec<String> = ["ssm-command", "spot-interruption", "instance-state"]
        .iter()
        .map(|k| {
            format!(
                "arn:aws:events:us-east-1:123456789012:rule/{}",
                out(&o, "event_rules")[*k].as_str().unwrap()
            )
        })
        .collect();
    for q in ["stop_events_queue_url", "stop_events_dlq_url"] {
        let attrs = queue_attributes(&sqs, &url(q)).await;
        let policy: Value =
            serde_json::from_str(attrs.get("Policy").expect("a queue policy")).unwrap();
        let statements = policy["Statement"].as_array().expect("statements");
        assert_eq!(statements.len(), 1, "{policy}");
        let st = &statements[0];
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(st["Principal"]["Service"], "events.amazonaws.com", "{st}");
        assert_eq!(st["Action"], "sqs:SendMessage", "{st}");
        assert_eq!(st["Resource"], arn[q], "{st}");
        let mut sources: Vec<String> = match &st["Condition"]["ArnEquals"]["aws:SourceArn"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("aws:SourceArn {other}"),
        };
        sources.sort();
        let mut want = rules.clone();
        want.sort();
        assert_eq!(sources, want, "{q}");
    }
}

#[tokio::test]
#[ignore = "needs the examples/local deployment: run by scripts/terraform-check.sh"]
async fn a_queued_job_runs_through_the_deployed_wiring() {
    // The handlers' own log lines say why a step failed.
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let o = outputs();
    let moto = out(&o, "moto_endpoint").as_str().unwrap().to_string();
    let sdk = spotrunner_aws::sdk::local(&moto).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);

    // The fake GitHub, with the token the module stored.
    let github = FakeGitHub::start_with_prefix("/api/v3").await;
    let token_param = out(&o, "github_credential_parameter").as_str().unwrap();
    github.set_pat(&parameter(&ssm, token_param).await);
    let config_param = out(&o, "config_parameter").as_str().unwrap();
    let mut doc: Value = serde_json::from_str(&parameter(&ssm, config_param).await).unwrap();
    doc["github"]["api_url"] = json!(github.url()); // includes /api/v3, as GHES
    ssm.put_parameter()
        .name(config_param)
        .value(doc.to_string())
        .overwrite(true)
        .send()
        .await
        .unwrap();

    // webhook: a signed queued example whose labels the `cpu` pool serves.
    let webhook_env = env_of(&o, "webhook");
    let service = spotrunner_webhook::service_from_env(&sdk, &webhook_env)
        .await
        .expect("webhook builds from the module's environment");
    let ex = examples("workflow_job")
        .into_iter()
        .find(|e| e.action() == Some("queued"))
        .expect("a queued example");
    let mut payload = ex.payload.clone();
    payload["workflow_job"]["labels"] = json!(["self-hosted", "linux", "x64"]);
    // GitHub's example repository is public, and no pool of the example
    // allows public repositories: the job is a private repository's.
    payload["repository"]["private"] = json!(true);
    // The example was queued years ago; create-runner drops jobs past GitHub's
    // 24 h queue limit, so it is queued now.
    payload["workflow_job"]["created_at"] = json!(chrono::Utc::now().to_rfc3339());
    let job_id = payload["workflow_job"]["id"].as_u64().unwrap();
    let body = serde_json::to_vec(&payload).unwrap();
    let secret_param = out(&o, "webhook_secret_parameters")[0].as_str().unwrap();
    let secret = parameter(&ssm, secret_param).await;
    let req =
        lambda_http::request::from_str(&http_api_event(&body, &sign(secret.as_bytes(), &body)))
            .expect("HTTP API event");
    let resp = spotrunner_webhook::handle(&service, req).await;
    assert_eq!(resp.status(), 202, "{:?}", resp.body());

    // create-runner: the job from the deployed jobs queue, then the bootstrap.
    let cr_env = env_of(&o, "create-runner");
    let handler = spotrunner_create_runner::handler_from_env(&sdk, &cr_env)
        .await
        .expect("create-runner builds from the module's environment");
    let jobs_url = cr_env.require("SPOTRUNNER_JOBS_QUEUE_URL").unwrap();
    let boot_url = cr_env.require("SPOTRUNNER_BOOTSTRAP_QUEUE_URL").unwrap();
    let r = handler
        .handle(take(&sqs, &jobs_url, Duration::from_secs(10)).await)
        .await;
    assert!(r.batch_item_failures.is_empty(), "job failed: {r:?}");
    let table = cr_env.require("SPOTRUNNER_LEDGER_TABLE").unwrap();
    let ledger = spotrunner_aws::dynamodb::DynamoLedger::new(&sdk, table);
    let job = ledger.get_job(job_id).await.unwrap().expect("job claimed");
    assert_eq!(job.state, JobState::Launched, "{job:?}");
    let r = handler
        .handle(take(&sqs, &boot_url, Duration::from_secs(40)).await)
        .await;
    assert!(r.batch_item_failures.is_empty(), "bootstrap failed: {r:?}");
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), 1);

    let runner = ledger
        .list_runners()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.job_id == job_id)
        .expect("runner recorded");
    assert_eq!(runner.state, RunnerState::Bootstrapped);
    let instance = runner.instance_id.clone().unwrap();

    // stop-runner: the SSM Success event for the deployed document. EventBridge
    // puts it on the stop-events queue (moto delivers no events); here it has
    // failed there until it reached the stop-events DLQ, and a bootstrap step of
    // the runner reached the bootstrap DLQ.
    let stop_env = env_of(&o, "stop-runner");
    let stop = spotrunner_stop_runner::handler_from_env(&sdk, &stop_env)
        .await
        .expect("stop-runner builds from the module's environment");
    let document = stop_env.require("SPOTRUNNER_SSM_DOCUMENT").unwrap();
    assert_eq!(document, out(&o, "ssm_document").as_str().unwrap());
    let event = StopEvent::CommandStatus {
        instance_id: instance.clone(),
        command_id: runner.command_id.clone().unwrap(),
        document,
        status: "Success".into(),
    };
    let mut body = event.to_eventbridge();
    body["time"] = json!(chrono::Utc::now().to_rfc3339());
    let step = BootstrapMessage {
        version: 1,
        job_id,
        runner_name: runner.name.clone(),
        instance_id: instance.clone(),
        pool: runner.pool.clone(),
        launched_at: chrono::Utc::now(),
        tries: 7,
        resend_after: None,
    };
    for (dlq, body) in [
        ("stop_events_dlq_url", body.to_string()),
        ("bootstrap_dlq_url", serde_json::to_string(&step).unwrap()),
    ] {
        sqs.send_message()
            .queue_url(out(&o, dlq).as_str().unwrap())
            .message_body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{dlq}: {e:?}"));
    }

    // dlq-mover, built from the environment the module hands it, puts each back
    // where it came from.
    let mover_env = env_of(&o, "dlq-mover");
    let env = spotrunner_dlq_mover::env::MoverEnv::from_lookup(|k| mover_env.get(k).cloned())
        .expect("dlq-mover's environment");
    let mover = spotrunner_dlq_mover::mover_from_env(&sdk, env);
    let report = spotrunner_dlq_mover::invoke(&mover, "srlocal", chrono::Utc::now()).await;
    assert_eq!(report.queue(DlqKind::StopEvents).moved, 1, "{report:?}");
    assert_eq!(report.queue(DlqKind::Bootstrap).moved, 1, "{report:?}");
    assert_eq!(
        (report.dropped_total(), report.failed),
        (0, 0),
        "{report:?}"
    );

    // create-runner takes the step back: the runner is bootstrapped already.
    let r = handler
        .handle(take(&sqs, &boot_url, Duration::from_secs(10)).await)
        .await;
    assert!(r.batch_item_failures.is_empty(), "bootstrap step: {r:?}");
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), 1);

    // stop-runner takes the event from the stop-events queue, as its SQS
    // event source mapping hands it over.
    let stop_url = out(&o, "stop_events_queue_url")
        .as_str()
        .unwrap()
        .to_string();
    let r = stop
        .handle_sqs(take(&sqs, &stop_url, Duration::from_secs(10)).await)
        .await;
    assert!(r.batch_item_failures.is_empty(), "stop event failed: {r:?}");
    let state = ec2
        .describe_instances()
        .instance_ids(&instance)
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string())
        .unwrap();
    assert!(state == "terminated" || state == "shutting-down", "{state}");
    assert!(
        ssm.get_parameter()
            .name(&runner.jit_parameter)
            .send()
            .await
            .is_err()
    );
    assert_eq!(github.calls(endpoint::DELETE_RUNNER), 1);
    let released = ledger.get_runner(&runner.name).await.unwrap().unwrap();
    assert_eq!(released.state, RunnerState::Released);
}

#[tokio::test]
#[ignore = "needs the examples/local deployment: run by scripts/terraform-check.sh"]
async fn each_deployed_launch_template_holds_the_ami_of_its_pools_architecture() {
    let o = outputs();
    let moto = out(&o, "moto_endpoint").as_str().unwrap().to_string();
    let sdk = spotrunner_aws::sdk::local(&moto).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let image = |pool: &'static str| {
        let id = out(&o, "launch_templates")[pool]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no launch template for pool {pool}"))
            .to_string();
        let ec2 = ec2.clone();
        async move {
            let versions = ec2
                .describe_launch_template_versions()
                .launch_template_id(&id)
                .versions("$Default")
                .send()
                .await
                .expect("describe launch template versions");
            versions.launch_template_versions()[0]
                .launch_template_data()
                .and_then(|d| d.image_id())
                .map(str::to_string)
                .unwrap_or_default()
        }
    };
    // The example's Graviton pool sets no ami: the module chose the arm64 one.
    assert_eq!(
        image("arm").await,
        "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"
    );
    assert_eq!(image("cpu").await, "ami-12c6146b", "an explicit ami as is");
    let config: spotrunner_core::Config =
        serde_json::from_str(out(&o, "config_json").as_str().unwrap()).unwrap();
    let arch = |name: &str| config.pool(name).unwrap().arch();
    assert_eq!(arch("arm"), spotrunner_core::config::Architecture::Arm64);
    assert_eq!(arch("cpu"), spotrunner_core::config::Architecture::X64);
}
