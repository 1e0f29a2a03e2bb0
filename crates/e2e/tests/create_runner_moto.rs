//! create-runner end to end: real adapters (DynamoDB ledger, EC2 CreateFleet, SSM
//! parameters and SendCommand, SQS) against moto, the GitHub client against the
//! fake GitHub over HTTP (App JWT + installation token), driven through the
//! Lambda glue with SQS events built from messages received from moto.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_ec2::types::{Filter, InstanceType, RequestLaunchTemplateData};
use spotrunner_aws::{
    dynamodb::DynamoLedger,
    sqs::SqsJobQueue,
    sqs_bootstrap::SqsBootstrapQueue,
    ssm_runner::{SsmCommands, SsmRunnerParameters},
};
use spotrunner_core::Config;
use spotrunner_core::create_runner::{CreateRunner, Settings};
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage};
use spotrunner_core::ports::{Ledger, RunnerScope, tags};
use spotrunner_create_runner::Handler;
use spotrunner_github::{Auth, ClientConfig, GitHubClient};
use spotrunner_testkit::fake_github::{self, FakeGitHub, endpoint};
use spotrunner_testkit::moto;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const JOBS: &str = "sr-jobs";
const BOOT: &str = "sr-bootstrap";

struct World {
    _moto: moto::SharedMoto,
    github: FakeGitHub,
    installation: u64,
    sqs: aws_sdk_sqs::Client,
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    ledger: Arc<DynamoLedger>,
    handler: Arc<Handler>,
    jobs_url: String,
    boot_url: String,
}

async fn world(cpu_max: u32, max_total_weight: Option<u32>) -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut urls = Vec::new();
    for q in [JOBS, BOOT] {
        let out = sqs
            .create_queue()
            .queue_name(q)
            .send()
            .await
            .expect("queue");
        urls.push(out.queue_url.expect("url"));
    }
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc.and_then(|v| v.vpc_id).unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet
        .and_then(|s| s.subnet_id)
        .unwrap();
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    for lt in ["sr-cpu", "sr-gpu"] {
        ec2.create_launch_template()
            .launch_template_name(lt)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(&image)
                    .instance_type(InstanceType::T3Micro)
                    .build(),
            )
            .send()
            .await
            .expect("launch template");
    }
    ssm.create_document()
        .name("sr-runner")
        .content(include_str!("../../../scripts/runner/ssm-document.yaml"))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .expect("document");
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger")
        .await
        .expect("table");

    let github = FakeGitHub::start().await;
    let installation = github.add_installation(RunnerScope::Org {
        org: "octo-org".into(),
    });
    let weight_line = max_total_weight.map_or(String::new(), |w| format!("max_total_weight = {w}"));
    let config = Config::from_toml(&format!(
        r#"
deployment = "sr"
{weight_line}
[github]
auth = {{ type = "app", app_id = {app}, private_key = "env:UNUSED" }}
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux", "x64"]
launch_template = "sr-cpu"
instance_types = ["t3.micro", "t3.small"]
subnets = ["{subnet}"]
max_runners = {cpu_max}
[[pools]]
name = "gpu"
labels = ["gpu"]
launch_template = "sr-gpu"
instance_types = ["t3.medium"]
subnets = ["{subnet}"]
max_runners = 50
weight = 3
"#,
        app = fake_github::APP_ID,
    ))
    .expect("config");
    config.validate_for_aws().expect("aws rules");
    let client = GitHubClient::new(ClientConfig::new(
        github.url(),
        Auth::App {
            app_id: fake_github::APP_ID.into(),
            private_key_pem: fake_github::APP_PRIVATE_KEY_PEM.into(),
        },
    ))
    .expect("client");
    let ledger = Arc::new(DynamoLedger::new(&sdk, "sr-ledger"));
    let mut settings = Settings::for_deployment("sr");
    settings.first_bootstrap_delay = Duration::ZERO;
    settings.defer_base = Duration::ZERO;
    let create_runner = CreateRunner {
        config: Arc::new(config),
        settings,
        ledger: ledger.clone(),
        github: Arc::new(client),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(&sdk)),
        commands: Arc::new(SsmCommands::new(
            &sdk,
            "sr-runner",
            "sr-bucket",
            "bootstrap.sh",
            "2.329.0",
            Some("us-east-1".into()),
        )),
        bootstrap_queue: Arc::new(SqsBootstrapQueue::new(&sdk, urls[1].clone())),
        jobs_queue: Arc::new(SqsJobQueue::new(&sdk, urls[0].clone())),
    };
    let handler = Arc::new(Handler {
        create_runner,
        sqs: sqs.clone(),
        jobs_queue_url: urls[0].clone(),
        bootstrap_queue_url: urls[1].clone(),
    });
    World {
        _moto: moto,
        github,
        installation,
        sqs,
        ec2,
        ssm,
        ledger,
        handler,
        jobs_url: urls[0].clone(),
        boot_url: urls[1].clone(),
    }
}

impl World {
    fn job(&self, id: u64, pool: &str) -> JobMessage {
        let labels = if pool == "gpu" {
            vec!["gpu"]
        } else {
            vec!["self-hosted", "linux", "x64"]
        };
        JobMessage {
            version: JOB_MESSAGE_VERSION,
            job_id: id,
            run_id: 9,
            run_attempt: 1,
            repository: "octo-org/app".into(),
            owner: "octo-org".into(),
            owner_type: "Organization".into(),
            installation_id: Some(self.installation),
            labels: labels.into_iter().map(String::from).collect(),
            pool: pool.into(),
            delivery_id: None,
            received_at: chrono::Utc::now(),
            queued_at: Some(chrono::Utc::now()),
            launch_attempt: 0,
            deferrals: 0,
        }
    }

    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.jobs_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    /// Receive everything visible on `queue`, in batches of up to 10, and hand the
    /// batches to `invocations` concurrent handler calls, as Lambda would. Failed
    /// messages are made visible again at once (the test fast-forwards time);
    /// the rest are deleted. Returns how many messages were handled.
    async fn pump(&self, queue: &str, invocations: usize) -> usize {
        let (url, name) = if queue == JOBS {
            (&self.jobs_url, JOBS)
        } else {
            (&self.boot_url, BOOT)
        };
        let mut batches = Vec::new();
        loop {
            let r = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await
                .expect("receive");
            let msgs = r.messages.unwrap_or_default();
            if msgs.is_empty() {
                break;
            }
            batches.push(msgs);
        }
        let handled = batches.iter().map(Vec::len).sum();
        for group in batches.chunks(invocations.max(1)) {
            let calls = group.iter().map(|msgs| {
                let event = sqs_event(msgs, name);
                let handler = self.handler.clone();
                async move { (msgs, handler.handle(event).await) }
            });
            for (msgs, resp) in futures::future::join_all(calls).await {
                let failed: BTreeSet<String> = resp
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect();
                for m in msgs {
                    let handle = m.receipt_handle().unwrap();
                    if failed.contains(m.message_id().unwrap()) {
                        self.sqs
                            .change_message_visibility()
                            .queue_url(url)
                            .receipt_handle(handle)
                            .visibility_timeout(0)
                            .send()
                            .await
                            .unwrap();
                    } else {
                        self.sqs
                            .delete_message()
                            .queue_url(url)
                            .receipt_handle(handle)
                            .send()
                            .await
                            .unwrap();
                    }
                }
            }
        }
        handled
    }

    /// Pump both queues until nothing is left (bounded).
    async fn settle(&self, invocations: usize) {
        for _ in 0..30 {
            let n = self.pump(JOBS, invocations).await + self.pump(BOOT, invocations).await;
            if n == 0 {
                return;
            }
        }
        panic!("queues never drained");
    }

    async fn instances(&self, state: Option<&str>) -> Vec<aws_sdk_ec2::types::Instance> {
        let mut req = self.ec2.describe_instances().filters(
            Filter::builder()
                .name("tag:spotrunner:deployment")
                .values("sr")
                .build(),
        );
        if let Some(s) = state {
            req = req.filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values(s)
                    .build(),
            );
        }
        req.send()
            .await
            .unwrap()
            .reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect()
    }

    /// Stop runners as stop-runner will: terminate the VM, release the capacity.
    async fn finish_all(&self) -> usize {
        let live = self.instances(Some("running")).await;
        for i in &live {
            let name = tag(i, tags::RUNNER_NAME).unwrap();
            self.ec2
                .terminate_instances()
                .instance_ids(i.instance_id().unwrap())
                .send()
                .await
                .unwrap();
            assert!(
                self.ledger
                    .release(&name, "test finished it", chrono::Utc::now())
                    .await
                    .unwrap()
            );
        }
        live.len()
    }
}

/// The event Lambda's SQS poller would deliver for these messages.
fn sqs_event(msgs: &[aws_sdk_sqs::types::Message], queue: &str) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = msgs
        .iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:123456789012:{queue}"));
            r
        })
        .collect();
    event
}

fn tag(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(String::from))
}

#[tokio::test]
async fn fifty_jobs_over_two_pools_give_fifty_tagged_vms_parameters_and_commands() {
    let w = world(50, None).await;
    for id in 0..50u64 {
        let pool = if id.is_multiple_of(2) { "cpu" } else { "gpu" };
        w.send(&w.job(1000 + id, pool).to_json()).await;
    }
    w.settle(4).await;

    let instances = w.instances(None).await;
    assert_eq!(instances.len(), 50, "exactly one VM per job");
    let mut by_job = BTreeMap::new();
    for i in &instances {
        let job: u64 = tag(i, tags::JOB_ID).unwrap().parse().unwrap();
        let pool = tag(i, tags::POOL).unwrap();
        assert_eq!(
            pool,
            if job.is_multiple_of(2) { "cpu" } else { "gpu" },
            "job {job} on the wrong pool"
        );
        assert_eq!(
            tag(i, tags::RUNNER_NAME).unwrap(),
            format!("sr-{pool}-{job}-0")
        );
        assert!(tag(i, tags::LAUNCHED_AT).is_some());
        by_job.insert(job, i.instance_id().unwrap().to_string());
    }
    assert_eq!(by_job.len(), 50);

    // One JIT parameter per runner, tagged with its instance.
    let mut values = Vec::new();
    for (job, instance) in &by_job {
        let pool = if job.is_multiple_of(2) { "cpu" } else { "gpu" };
        let name = format!("/sr/jit/sr-{pool}-{job}-0");
        let p = w
            .ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
            .expect("parameter");
        values.push(p.parameter.unwrap().value.unwrap());
        let t = w
            .ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id(&name)
            .send()
            .await
            .unwrap();
        assert!(
            t.tag_list()
                .iter()
                .any(|t| t.key() == "spotrunner:instance-id" && t.value() == instance),
            "{name} not tagged with {instance}"
        );
    }

    // One SendCommand per instance; no JIT value in any parameter.
    let mut commands = Vec::new();
    let mut next = None;
    loop {
        let out = w
            .ssm
            .list_commands()
            .set_next_token(next)
            .send()
            .await
            .unwrap();
        commands.extend(out.commands().to_vec());
        next = out.next_token().map(String::from);
        if next.is_none() {
            break;
        }
    }
    assert_eq!(commands.len(), 50, "one SendCommand per VM");
    let mut targets = BTreeSet::new();
    for c in &commands {
        targets.extend(c.instance_ids().iter().cloned());
        let params = format!("{:?}", c.parameters());
        for v in &values {
            assert!(
                !params.contains(v.as_str()),
                "a JIT value leaked into SendCommand"
            );
        }
        assert!(params.contains("jitParameter"));
    }
    assert_eq!(targets.len(), 50);

    // GitHub: one JIT call per job, one installation token for all of them.
    assert_eq!(w.github.calls(endpoint::GENERATE_JITCONFIG), 50);
    assert_eq!(
        w.github.tokens_minted(),
        1,
        "installation token cached across jobs"
    );
    let ledger_runners = w.ledger.list_runners().await.unwrap();
    assert_eq!(ledger_runners.len(), 50);
    assert!(ledger_runners.iter().all(|r| r.command_id.is_some()));
    println!(
        "calls per job: github jit {} / 50, tokens {} total, github total {} / 50",
        w.github.calls(endpoint::GENERATE_JITCONFIG),
        w.github.tokens_minted(),
        w.github.total_calls()
    );
}

#[tokio::test]
async fn every_message_three_times_with_eight_concurrent_invocations_gives_one_vm_per_job() {
    let w = world(50, None).await;
    for _round in 0..3 {
        for id in 0..30u64 {
            let pool = if id.is_multiple_of(3) { "gpu" } else { "cpu" };
            w.send(&w.job(2000 + id, pool).to_json()).await;
        }
    }
    w.settle(8).await;
    let instances = w.instances(None).await;
    let jobs: BTreeSet<String> = instances
        .iter()
        .map(|i| tag(i, tags::JOB_ID).unwrap())
        .collect();
    assert_eq!(jobs.len(), 30);
    assert_eq!(instances.len(), 30, "duplicates launched nothing");
    assert_eq!(w.github.calls(endpoint::GENERATE_JITCONFIG), 30);
}

#[tokio::test]
async fn max_runners_five_never_exceeded_and_all_twenty_served_as_runners_finish() {
    let w = world(5, None).await;
    for id in 0..20u64 {
        w.send(&w.job(3000 + id, "cpu").to_json()).await;
    }
    let mut served = 0;
    for _ in 0..20 {
        w.pump(JOBS, 4).await;
        w.pump(BOOT, 4).await;
        let live = w.instances(Some("running")).await.len();
        assert!(live <= 5, "{live} live VMs of a pool capped at 5");
        served += w.finish_all().await;
        if served == 20 {
            break;
        }
    }
    assert_eq!(served, 20, "every job served once runners finished");
    assert_eq!(w.instances(None).await.len(), 20, "no job launched twice");
}

#[tokio::test]
async fn global_weighted_quota_holds_with_mixed_weights() {
    // gpu weighs 3, cpu 1; quota 10.
    let w = world(50, Some(10)).await;
    for id in 0..6u64 {
        w.send(&w.job(4000 + id, "gpu").to_json()).await;
        w.send(&w.job(4100 + id, "cpu").to_json()).await;
    }
    let mut served = 0;
    for _ in 0..20 {
        w.pump(JOBS, 4).await;
        w.pump(BOOT, 4).await;
        let weight: u32 = w
            .instances(Some("running"))
            .await
            .iter()
            .map(|i| {
                if tag(i, tags::POOL).as_deref() == Some("gpu") {
                    3
                } else {
                    1
                }
            })
            .sum();
        assert!(weight <= 10, "live weight {weight} above the quota of 10");
        served += w.finish_all().await;
        if served == 12 {
            break;
        }
    }
    assert_eq!(served, 12);
}

#[tokio::test]
async fn one_malformed_message_in_a_batch_of_ten_fails_alone() {
    let w = world(50, None).await;
    for id in 0..9u64 {
        w.send(&w.job(5000 + id, "cpu").to_json()).await;
    }
    w.send("{\"version\":1,\"job_id\":\"not a number\"}").await;
    let r = w
        .sqs
        .receive_message()
        .queue_url(&w.jobs_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let msgs = r.messages.unwrap_or_default();
    assert_eq!(msgs.len(), 10);
    let bad_id = msgs
        .iter()
        .find(|m| m.body().unwrap().contains("not a number"))
        .and_then(|m| m.message_id.clone())
        .unwrap();
    let event = sqs_event(&msgs, JOBS);
    let resp = w.handler.handle(event).await;
    let failed: Vec<&str> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec![bad_id.as_str()]);
    assert_eq!(w.instances(None).await.len(), 9);
}
