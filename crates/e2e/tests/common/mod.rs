//! The moto world the create-runner, stop-runner and janitor tests share: real
//! adapters against moto, the GitHub client against the fake GitHub.
#![allow(dead_code)]

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
use spotrunner_core::janitor::{Janitor, JanitorSettings};
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage};
use spotrunner_core::ports::{Ledger, RunnerScope, tags};
use spotrunner_core::stop_runner::StopRunner;
use spotrunner_create_runner::Handler;
use spotrunner_github::{Auth, ClientConfig, GitHubClient};
use spotrunner_testkit::fake_github::{self, FakeGitHub};
use spotrunner_testkit::moto;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub const JOBS: &str = "sr-jobs";
pub const BOOT: &str = "sr-bootstrap";
/// moto's account and region.
pub const INSTANCE_ARN_PREFIX: &str = "arn:aws:ec2:us-east-1:123456789012:instance/";

pub struct World {
    pub _moto: moto::SharedMoto,
    pub github: FakeGitHub,
    pub installation: u64,
    pub sqs: aws_sdk_sqs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ledger: Arc<DynamoLedger>,
    pub handler: Arc<Handler>,
    pub jobs_url: String,
    pub boot_url: String,
    pub config: Arc<Config>,
    pub compute: Arc<spotrunner_aws_ec2::Ec2Compute>,
    pub params: Arc<SsmRunnerParameters>,
    pub stop: Arc<spotrunner_stop_runner::Handler>,
    pub janitor: Janitor,
}

pub async fn world(cpu_max: u32, max_total_weight: Option<u32>) -> World {
    world_with(cpu_max, max_total_weight, "").await
}

/// [`world`] with `cpu_extra` appended to the `cpu` pool (TOML lines, e.g. its
/// `sizing`).
pub async fn world_with(cpu_max: u32, max_total_weight: Option<u32>, cpu_extra: &str) -> World {
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
    let subnet = network(&ec2, &["sr-cpu", "sr-gpu"]).await;
    ssm.create_document()
        .name("sr-runner")
        .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
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
# GitHub's example payloads are of public repositories, of any owner.
allowed_owners = ["*"]
allow_public_repositories = true
{weight_line}
[github]
auth = {{ type = "app", app_id = {app}, private_key = "env:UNUSED" }}
[webhook]
secrets = ["ssm:/sr/webhook/secret"]
[[pools]]
name = "cpu"
labels = ["linux", "x64"]
launch_template = "sr-cpu"
instance_types = ["t3.micro", "t3.small"]
subnets = ["{subnet}"]
max_runners = {cpu_max}
relaunch = {{ delay_secs = 1 }}
{cpu_extra}
[[pools]]
name = "gpu"
labels = ["gpu"]
launch_template = "sr-gpu"
instance_types = ["t3.medium"]
subnets = ["{subnet}"]
max_runners = 50
weight = 3
relaunch = {{ delay_secs = 1 }}
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
    let config = Arc::new(config);
    let github_client: Arc<GitHubClient> = Arc::new(client);
    let compute = Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&sdk));
    let params =
        Arc::new(SsmRunnerParameters::new(&sdk).with_instance_arn_prefix(INSTANCE_ARN_PREFIX));
    let jobs_queue = Arc::new(SqsJobQueue::new(&sdk, urls[0].clone()));
    let stop = Arc::new(spotrunner_stop_runner::Handler {
        stop_runner: StopRunner {
            config: config.clone(),
            document: "sr-runner".into(),
            ledger: ledger.clone(),
            github: github_client.clone(),
            compute: compute.clone(),
            parameters: params.clone(),
            jobs_queue: jobs_queue.clone(),
        },
    });
    let janitor = Janitor {
        config: config.clone(),
        settings: JanitorSettings::for_deployment("sr"),
        ledger: ledger.clone(),
        github: github_client.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        jobs_queue: jobs_queue.clone(),
    };
    let mut settings = Settings::for_deployment("sr");
    settings.first_bootstrap_delay = Duration::ZERO;
    settings.defer_base = Duration::ZERO;
    let create_runner = CreateRunner {
        config: config.clone(),
        settings,
        ledger: ledger.clone(),
        github: github_client.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        commands: Arc::new(SsmCommands::new(
            &sdk,
            "sr-runner",
            "sr-bucket",
            "bootstrap.sh",
            "2.329.0",
            Some("us-east-1".into()),
        )),
        bootstrap_queue: Arc::new(SqsBootstrapQueue::new(&sdk, urls[1].clone())),
        jobs_queue,
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
        config,
        compute,
        params,
        stop,
        janitor,
    }
}

impl World {
    pub fn job(&self, id: u64, pool: &str) -> JobMessage {
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
            job_name: None,
        }
    }

    pub async fn send(&self, body: &str) {
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
    pub async fn pump(&self, queue: &str, invocations: usize) -> usize {
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
    pub async fn settle(&self, invocations: usize) {
        for _ in 0..30 {
            let n = self.pump(JOBS, invocations).await + self.pump(BOOT, invocations).await;
            if n == 0 {
                return;
            }
        }
        panic!("queues never drained");
    }

    pub async fn instances(&self, state: Option<&str>) -> Vec<aws_sdk_ec2::types::Instance> {
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

    /// Stop runners as stop-runner will: terminate the VM, release the capacity,
    /// wake the pool's waiting line.
    pub async fn finish_all(&self) -> usize {
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
            let waker = spotrunner_core::waiting::Waker {
                config: &self.config,
                ledger: self.ledger.as_ref(),
                jobs_queue: self.handler.create_runner.jobs_queue.as_ref(),
            };
            let pool = tag(i, tags::POOL).unwrap();
            waker.after_release(&pool, chrono::Utc::now()).await;
        }
        live.len()
    }

    /// A bare instance as create-runner would tag it (deployment, pool `cpu`,
    /// runner, job), launched by hand: the ledger knows nothing of it.
    pub async fn run_instance(&self, deployment: &str, runner: &str, job: u64) -> String {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let image = self.ec2.describe_images().send().await.unwrap().images()[0]
            .image_id()
            .unwrap()
            .to_string();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let out = self
            .ec2
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .tags(tag(tags::DEPLOYMENT, deployment))
                    .tags(tag(tags::POOL, "cpu"))
                    .tags(tag(tags::RUNNER_NAME, runner))
                    .tags(tag(tags::JOB_ID, &job.to_string()))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    }
}

/// The event Lambda's SQS poller would deliver for these messages.
pub fn sqs_event(msgs: &[aws_sdk_sqs::types::Message], queue: &str) -> SqsEvent {
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

pub fn tag(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    i.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(String::from))
}

/// Every job message on the queue, received and deleted (a message that is
/// not a job message fails the test).
pub async fn drain_jobs(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<JobMessage> {
    let mut out = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive");
        let msgs = r.messages.unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            out.push(JobMessage::parse(m.body().expect("body")).expect("a job message"));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().expect("receipt handle"))
                .send()
                .await
                .expect("delete");
        }
    }
}

/// A VPC with one subnet and a launch template per name, from moto's first
/// image; returns the subnet id.
pub async fn network(ec2: &aws_sdk_ec2::Client, launch_templates: &[&str]) -> String {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("vpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc)
        // Room for a few hundred instances: moto, like EC2, hands out each
        // address of the subnet once (a /24 holds 251).
        .cidr_block("10.0.0.0/17")
        .availability_zone("us-east-1a")
        .send()
        .await
        .expect("subnet")
        .subnet
        .and_then(|s| s.subnet_id)
        .expect("subnet id");
    let image = ec2.describe_images().send().await.expect("images").images()[0]
        .image_id()
        .expect("image id")
        .to_string();
    for lt in launch_templates {
        ec2.create_launch_template()
            .launch_template_name(*lt)
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
    subnet
}

/// Create or overwrite a SecureString parameter (a rotation is an overwrite).
pub async fn put_secure(ssm: &aws_sdk_ssm::Client, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {name}: {e:?}"));
}

/// Create queue `name` (moto answers an existing one with its URL) and return its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
        .queue_url
        .unwrap_or_else(|| panic!("queue {name}: no url"))
}
