//! The chaos world: moto and the fake GitHub, each behind a fault proxy; the
//! Lambdas' handlers built by their own wiring (the environment Terraform hands
//! them) with the SDK pointed at the proxy, one proxy listener per handler so
//! that every call moto received is attributed; and direct, fault-free clients
//! for the test's own reading and for playing GitHub, EventBridge and the SQS
//! poller.
#![allow(dead_code)]

pub mod play;
pub mod proxylog;
pub mod pump;
pub mod report;

use aws_sdk_ec2::types::Filter;
use spotrunner_aws::dynamodb::DynamoLedger;
use spotrunner_aws::runtime::CONFIG_PARAMETER_ENV;
use spotrunner_aws::sqs::SqsJobQueue;
use spotrunner_aws::ssm_runner::SsmRunnerParameters;
use spotrunner_core::janitor::{Janitor, JanitorSettings};
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage};
use spotrunner_core::ports::RunnerScope;
use spotrunner_testkit::fake_github::{self, FakeGitHub};
use spotrunner_testkit::fault_proxy::{FaultConfig, FaultProxy};
use spotrunner_testkit::moto;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const DEPLOYMENT: &str = "sr";
pub const REPO: &str = "octo-org/app";
pub const DOCUMENT: &str = "sr-runner";
pub const INSTANCE_ARN_PREFIX: &str = "arn:aws:ec2:us-east-1:123456789012:instance/";

/// One pool of the chaos configuration.
#[derive(Debug, Clone, Copy)]
pub struct PoolSpec {
    pub name: &'static str,
    pub label: &'static str,
    pub max_runners: u32,
    pub weight: u32,
}

pub const POOLS: [PoolSpec; 2] = [
    PoolSpec {
        name: "cpu",
        label: "x64",
        max_runners: 100,
        weight: 1,
    },
    PoolSpec {
        name: "gpu",
        label: "gpu",
        max_runners: 30,
        weight: 3,
    },
];
pub const MAX_TOTAL_WEIGHT: u32 = 160;

/// Fault-free clients straight to moto.
pub struct Direct {
    pub sqs: aws_sdk_sqs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub ledger: DynamoLedger,
}

pub struct World {
    pub _moto: moto::SharedMoto,
    pub seed: u64,
    /// In front of moto; listeners `create-runner`, `stop-runner`, `janitor`, `webhook`.
    pub aws: FaultProxy,
    /// In front of the fake GitHub; listeners `create-runner`, `stop-runner`, `janitor`.
    pub gh: FaultProxy,
    pub github: FakeGitHub,
    pub installation: u64,
    pub direct: Direct,
    pub create: Arc<spotrunner_create_runner::Handler>,
    pub stop: Arc<spotrunner_stop_runner::Handler>,
    pub janitor: Arc<Janitor>,
    /// The webhook's ledger (records `in_progress`/`completed`), through the proxy.
    pub webhook_ledger: Arc<DynamoLedger>,
    pub jobs_url: String,
    pub boot_url: String,
}

/// The SDK configuration of one "Lambda": its proxy listener, the standard
/// retry mode (3 attempts, as in production) with short backoffs.
async fn lambda_sdk(url: &str) -> aws_config::SdkConfig {
    spotrunner_aws::sdk::local(url)
        .await
        .to_builder()
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(20))
                .with_max_backoff(Duration::from_millis(400)),
        )
        .build()
}

pub async fn world(seed: u64) -> World {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let direct = Direct {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        ec2: aws_sdk_ec2::Client::new(&sdk),
        ssm: aws_sdk_ssm::Client::new(&sdk),
        ledger: DynamoLedger::new(&sdk, "sr-ledger"),
    };
    let mut urls = Vec::new();
    for q in ["sr-jobs", "sr-bootstrap"] {
        let out = direct
            .sqs
            .create_queue()
            .queue_name(q)
            .send()
            .await
            .unwrap();
        urls.push(out.queue_url.unwrap());
    }
    let templates: Vec<String> = POOLS.iter().map(|p| format!("sr-{}", p.name)).collect();
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    let subnet = crate::common::network(&direct.ec2, &templates).await;
    direct
        .ssm
        .create_document()
        .name(DOCUMENT)
        .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .unwrap();
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger")
        .await
        .unwrap();

    let github = FakeGitHub::start().await;
    let installation = github.add_installation(RunnerScope::Org {
        org: "octo-org".into(),
    });
    // SPOTRUNNER_CHAOS_RATE: the share of faulted calls (default 0.2).
    let rate = std::env::var("SPOTRUNNER_CHAOS_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.2);
    let aws = FaultProxy::start(
        moto.url(),
        FaultConfig::new("aws", seed).rate(rate).record_bodies([
            "CreateFleet",
            "RunInstances",
            "SendCommand",
            "TerminateInstances",
            "DeleteParameter",
            "PutItem",
            "UpdateItem",
            "TransactWriteItems",
        ]),
    )
    .await;
    let gh = FaultProxy::start(&github.url(), FaultConfig::new("github", seed).rate(rate)).await;
    crate::common::put_secure(
        &direct.ssm,
        "/sr/github/app-key",
        fake_github::APP_PRIVATE_KEY_PEM,
    )
    .await;
    crate::common::put_secure(&direct.ssm, "/sr/webhook/secret", "chaos-secret").await;
    // One configuration document per handler, identical but for the GitHub
    // URL: each handler calls GitHub through its own proxy listener.
    for handler in ["create-runner", "stop-runner", "janitor"] {
        let url = gh.add_front(handler).await;
        crate::common::put_secure(
            &direct.ssm,
            &format!("/sr/config/{handler}"),
            &config_json(&url, &subnet),
        )
        .await;
    }

    // Cold starts without faults (a failed cold start is not what is tested).
    aws.set_enabled(false);
    gh.set_enabled(false);
    let env: BTreeMap<String, String> = [
        ("SPOTRUNNER_JOBS_QUEUE_URL", urls[0].as_str()),
        ("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", urls[1].as_str()),
        ("SPOTRUNNER_LEDGER_TABLE", "sr-ledger"),
        ("SPOTRUNNER_SSM_DOCUMENT", DOCUMENT),
        ("SPOTRUNNER_BUCKET", "sr-bucket"),
        ("SPOTRUNNER_INSTANCE_ARN_PREFIX", INSTANCE_ARN_PREFIX),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();

    let env_of = |handler: &str| {
        let mut env = env.clone();
        env.insert(CONFIG_PARAMETER_ENV.into(), format!("/sr/config/{handler}"));
        env
    };
    let create_sdk = lambda_sdk(&aws.add_front("create-runner").await).await;
    let mut create =
        spotrunner_create_runner::handler_from_env(&create_sdk, &env_of("create-runner"))
            .await
            .expect("create-runner cold start");
    let s = &mut create.create_runner.settings;
    // The test fast-forwards every wait: no delays on the queues, a lease
    // short enough for the run (a lease left by a failed step expires).
    s.first_bootstrap_delay = Duration::ZERO;
    s.defer_base = Duration::ZERO;
    s.claim_lease = chrono::Duration::seconds(8);
    s.busy_retry = Duration::from_secs(1);

    let stop_sdk = lambda_sdk(&aws.add_front("stop-runner").await).await;
    let stop = spotrunner_stop_runner::handler_from_env(&stop_sdk, &env_of("stop-runner"))
        .await
        .expect("stop-runner cold start");

    let janitor_sdk = lambda_sdk(&aws.add_front("janitor").await).await;
    let config = spotrunner_aws::runtime::load_config_from(&janitor_sdk, &env_of("janitor"))
        .await
        .expect("janitor config");
    let secrets = spotrunner_aws::ssm::SsmSecretStore::new(&janitor_sdk);
    let janitor_github = spotrunner_github::client_from_config(&config.github, Some(&secrets))
        .await
        .expect("janitor github");
    let janitor = Janitor {
        settings: JanitorSettings::for_deployment(DEPLOYMENT),
        ledger: Arc::new(DynamoLedger::new(&janitor_sdk, "sr-ledger")),
        github: Arc::new(janitor_github),
        compute: Arc::new(spotrunner_aws_ec2::Ec2Compute::new(&janitor_sdk)),
        parameters: Arc::new(SsmRunnerParameters::new(&janitor_sdk)),
        jobs_queue: Arc::new(SqsJobQueue::new(&janitor_sdk, urls[0].clone())),
        config: Arc::new(config),
    };
    let webhook_sdk = lambda_sdk(&aws.add_front("webhook").await).await;
    let webhook_ledger = Arc::new(DynamoLedger::new(&webhook_sdk, "sr-ledger"));
    aws.set_enabled(true);
    gh.set_enabled(true);

    World {
        _moto: moto,
        seed,
        aws,
        gh,
        github,
        installation,
        direct,
        create: Arc::new(create),
        stop: Arc::new(stop),
        janitor: Arc::new(janitor),
        webhook_ledger,
        jobs_url: urls[0].clone(),
        boot_url: urls[1].clone(),
    }
}

/// The configuration document, as Terraform renders it into SSM.
fn config_json(github_url: &str, subnet: &str) -> String {
    let pools: Vec<serde_json::Value> = POOLS
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "labels": ["linux", p.label],
                "launch_template": format!("sr-{}", p.name),
                "instance_types": ["t3.micro", "t3.small"],
                "subnets": [subnet],
                "max_runners": p.max_runners,
                "weight": p.weight,
                "boot_timeout_secs": 120,
                "max_run_time_secs": 3600,
            })
        })
        .collect();
    serde_json::json!({
        "deployment": DEPLOYMENT,
        // GitHub's example payloads are of public repositories, of any owner.
        "allowed_owners": ["*"],
        "allow_public_repositories": true,
        "max_total_weight": MAX_TOTAL_WEIGHT,
        "github": {
            "api_url": github_url,
            "auth": { "type": "app", "app_id": fake_github::APP_ID.parse::<u64>().unwrap(),
                      "private_key": "ssm:/sr/github/app-key" },
        },
        "webhook": { "secrets": ["ssm:/sr/webhook/secret"] },
        "pools": pools,
    })
    .to_string()
}

impl World {
    /// The job message the webhook would queue for job `id` on `pool`.
    pub fn job(&self, id: u64, pool: &PoolSpec) -> JobMessage {
        JobMessage {
            version: JOB_MESSAGE_VERSION,
            job_id: id,
            run_id: 9,
            run_attempt: 1,
            repository: REPO.into(),
            owner: "octo-org".into(),
            owner_type: "Organization".into(),
            installation_id: Some(self.installation),
            labels: vec!["self-hosted".into(), "linux".into(), pool.label.into()],
            pool: pool.name.into(),
            delivery_id: None,
            received_at: chrono::Utc::now(),
            queued_at: Some(chrono::Utc::now()),
            launch_attempt: 0,
            deferrals: 0,
            job_name: None,
        }
    }

    /// This deployment's instances in moto, any state.
    pub async fn instances(&self) -> Vec<aws_sdk_ec2::types::Instance> {
        let mut out = Vec::new();
        let mut next = None;
        loop {
            let page = self
                .direct
                .ec2
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("tag:spotrunner:deployment")
                        .values(DEPLOYMENT)
                        .build(),
                )
                .set_next_token(next)
                .send()
                .await
                .unwrap();
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances().to_vec()),
            );
            next = page.next_token().map(String::from);
            if next.is_none() {
                return out;
            }
        }
    }
}

pub use crate::common::tag;

/// pending or running.
pub fn is_live(i: &aws_sdk_ec2::types::Instance) -> bool {
    matches!(
        i.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("pending" | "running")
    )
}

/// A small xorshift generator (the test's own choices; the proxies draw from
/// the same seed independently).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
