//! create-runner over the real EC2 and SSM adapters on SDK-level mocks, for what
//! moto cannot produce: spot capacity errors, throttling, `InvalidInstanceId`.

use aws_sdk_ec2::config::retry::RetryConfig as Ec2Retry;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::create_fleet::{CreateFleetError, CreateFleetOutput};
use aws_sdk_ec2::operation::terminate_instances::TerminateInstancesOutput;
use aws_sdk_ec2::types::{
    CreateFleetError as FleetError, CreateFleetInstance, DefaultTargetCapacityType,
    InstanceLifecycle,
};
use aws_sdk_ssm::config::retry::RetryConfig as SsmRetry;
use aws_sdk_ssm::operation::send_command::SendCommandError;
use aws_sdk_ssm::types::error::InvalidInstanceId;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use spotrunner_aws::ssm_runner::SsmCommands;
use spotrunner_aws_ec2::Ec2Compute;
use spotrunner_core::Config;
use spotrunner_core::create_runner::{CreateRunner, JobOutcome, Settings};
use spotrunner_core::fakes::{
    MemoryBootstrapQueue, MemoryCommands, MemoryGitHub, MemoryLedger, MemoryParameters, MemoryQueue,
};
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage};
use spotrunner_core::ports::{Commands, Compute, Ledger, RunnerState};
use std::sync::Arc;

fn config(fallback: bool) -> Config {
    Config::from_toml(&format!(
        r#"
deployment = "sr"
# GitHub's example payloads are of public repositories, of any owner.
allowed_owners = ["*"]
allow_public_repositories = true
[github]
auth = {{ type = "pat", token = "env:T" }}
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "sr-cpu"
instance_types = ["m7i.large", "m6a.large"]
subnets = ["subnet-a"]
on_demand_fallback = {fallback}
max_runners = 3
boot_timeout_secs = 60
"#
    ))
    .unwrap()
}

struct World {
    cr: CreateRunner,
    ledger: Arc<MemoryLedger>,
    params: Arc<MemoryParameters>,
    github: Arc<MemoryGitHub>,
    jobs: Arc<MemoryQueue>,
    boot: Arc<MemoryBootstrapQueue>,
}

fn world(config: Config, compute: Arc<dyn Compute>, commands: Arc<dyn Commands>) -> World {
    let ledger = Arc::new(MemoryLedger::default());
    let params = Arc::new(MemoryParameters::default());
    let github = Arc::new(MemoryGitHub::default());
    let jobs = Arc::new(MemoryQueue::default());
    let boot = Arc::new(MemoryBootstrapQueue::default());
    let cr = CreateRunner {
        settings: Settings::for_deployment("sr"),
        config: Arc::new(config),
        ledger: ledger.clone(),
        github: github.clone(),
        compute,
        parameters: params.clone(),
        commands,
        bootstrap_queue: boot.clone(),
        jobs_queue: jobs.clone(),
    };
    World {
        cr,
        ledger,
        params,
        github,
        jobs,
        boot,
    }
}

fn job() -> JobMessage {
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: 42,
        run_id: 1,
        run_attempt: 1,
        repository: "o/r".into(),
        owner: "o".into(),
        owner_type: "Organization".into(),
        installation_id: None,
        labels: vec!["linux".into()],
        pool: "cpu".into(),
        delivery_id: None,
        received_at: chrono::Utc::now(),
        queued_at: None,
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

fn is(
    req: &aws_sdk_ec2::operation::create_fleet::CreateFleetInput,
    t: DefaultTargetCapacityType,
) -> bool {
    req.target_capacity_specification()
        .and_then(|s| s.default_target_capacity_type())
        == Some(&t)
}

fn spot_has_no_capacity() -> Rule {
    mock!(aws_sdk_ec2::Client::create_fleet)
        .match_requests(|r| is(r, DefaultTargetCapacityType::Spot))
        .then_output(|| {
            CreateFleetOutput::builder()
                .errors(
                    FleetError::builder()
                        .error_code("InsufficientInstanceCapacity")
                        .error_message("no spot m7i.large in subnet-a")
                        .lifecycle(InstanceLifecycle::Spot)
                        .build(),
                )
                .build()
        })
}

fn on_demand_launches() -> Rule {
    mock!(aws_sdk_ec2::Client::create_fleet)
        .match_requests(|r| is(r, DefaultTargetCapacityType::OnDemand))
        .then_output(|| {
            CreateFleetOutput::builder()
                .instances(
                    CreateFleetInstance::builder()
                        .instance_ids("i-0ondemand0000001")
                        .build(),
                )
                .build()
        })
}

fn ec2(rules: &[&Rule]) -> Arc<dyn Compute> {
    let client: aws_sdk_ec2::Client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules, |c| c
        .retry_config(Ec2Retry::disabled()));
    Arc::new(Ec2Compute::from_client(client))
}

#[tokio::test]
async fn spot_capacity_error_falls_back_to_on_demand_when_the_pool_allows() {
    let (spot, od) = (spot_has_no_capacity(), on_demand_launches());
    let w = world(
        config(true),
        ec2(&[&spot, &od]),
        Arc::new(MemoryCommands::default()),
    );
    let out = w.cr.handle_job(&job(), chrono::Utc::now()).await;
    assert_eq!(
        out,
        JobOutcome::Launched {
            runner_name: "sr_cpu-42-0".into(),
            instance_id: "i-0ondemand0000001".into()
        }
    );
    assert_eq!(
        (spot.num_calls(), od.num_calls()),
        (1, 1),
        "one spot try, one on-demand launch"
    );
}

#[tokio::test]
async fn spot_capacity_error_without_fallback_is_retried_later_with_nothing_left() {
    let (spot, od) = (spot_has_no_capacity(), on_demand_launches());
    let w = world(
        config(false),
        ec2(&[&spot, &od]),
        Arc::new(MemoryCommands::default()),
    );
    let out = w.cr.handle_job(&job(), chrono::Utc::now()).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    assert_eq!(
        od.num_calls(),
        0,
        "no on-demand launch for a spot-only pool"
    );
    assert!(w.params.names().is_empty());
    assert!(w.github.runners().is_empty());
    assert_eq!(
        w.ledger
            .capacity()
            .await
            .unwrap()
            .pools
            .get("cpu")
            .copied()
            .unwrap_or(0),
        0
    );
    assert_eq!(w.jobs.sent().len(), 1, "the job waits on the queue");
}

#[tokio::test]
async fn ec2_throttling_is_retried_and_the_retry_launches_once() {
    let throttled = mock!(aws_sdk_ec2::Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .message("slow down")
                .build(),
        )
    });
    let w = world(
        config(false),
        ec2(&[&throttled]),
        Arc::new(MemoryCommands::default()),
    );
    let out = w.cr.handle_job(&job(), chrono::Utc::now()).await;
    assert!(matches!(out, JobOutcome::Retry { .. }), "{out:?}");
    let runner = w.ledger.get_runner("sr_cpu-42-0").await.unwrap().unwrap();
    assert_eq!(
        runner.state,
        RunnerState::Reserved,
        "reservation kept for the retry"
    );
    assert_eq!(
        w.params.names().len(),
        1,
        "JIT parameter kept for the retry"
    );

    // The retry (after the lease) reuses both and launches.
    let od = on_demand_launches();
    let spot_ok = mock!(aws_sdk_ec2::Client::create_fleet).then_output(|| {
        CreateFleetOutput::builder()
            .instances(
                CreateFleetInstance::builder()
                    .instance_ids("i-0spot00000000001")
                    .build(),
            )
            .build()
    });
    let w2 = World {
        cr: CreateRunner {
            compute: ec2(&[&spot_ok, &od]),
            ..w.cr.clone()
        },
        ..w
    };
    let later = chrono::Utc::now() + chrono::Duration::minutes(6);
    let out = w2.cr.handle_job(&job(), later).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w2.github.jit_calls(), 1, "no second registration");
    assert_eq!(spot_ok.num_calls(), 1);
}

#[tokio::test]
async fn invalid_instance_id_is_retried_then_boot_timeout_terminates_and_requeues() {
    let launch = mock!(aws_sdk_ec2::Client::create_fleet).then_output(|| {
        CreateFleetOutput::builder()
            .instances(
                CreateFleetInstance::builder()
                    .instance_ids("i-0slowboot0000001")
                    .build(),
            )
            .build()
    });
    let terminate = mock!(aws_sdk_ec2::Client::terminate_instances)
        .match_requests(|r| r.instance_ids() == ["i-0slowboot0000001"])
        .then_output(|| TerminateInstancesOutput::builder().build());
    let not_registered = mock!(aws_sdk_ssm::Client::send_command).then_error(|| {
        SendCommandError::InvalidInstanceId(
            InvalidInstanceId::builder()
                .message("not registered")
                .build(),
        )
    });
    let ssm: aws_sdk_ssm::Client =
        mock_client!(aws_sdk_ssm, RuleMode::MatchAny, [&not_registered], |c| c
            .retry_config(SsmRetry::disabled()));
    let commands =
        SsmCommands::from_client(ssm, "sr-runner", "bucket", "bootstrap.sh", "2.329.0", None);
    let w = world(
        config(false),
        ec2(&[&launch, &terminate]),
        Arc::new(commands),
    );
    let t0 = chrono::Utc::now();
    assert!(matches!(
        w.cr.handle_job(&job(), t0).await,
        JobOutcome::Launched { .. }
    ));
    let (first, _) = w.boot.take_all().remove(0);
    let out =
        w.cr.handle_bootstrap(&first, t0 + chrono::Duration::seconds(20))
            .await;
    assert!(
        matches!(out, JobOutcome::Deferred { .. }),
        "agent not online yet: {out:?}"
    );
    let (second, _) = w.boot.take_all().remove(0);
    assert_eq!(terminate.num_calls(), 0);
    let out =
        w.cr.handle_bootstrap(&second, t0 + chrono::Duration::seconds(61))
            .await;
    assert!(
        matches!(out, JobOutcome::Dropped { .. }),
        "boot timeout: {out:?}"
    );
    assert_eq!(not_registered.num_calls(), 2);
    assert_eq!(terminate.num_calls(), 1, "instance terminated");
    assert!(w.params.names().is_empty());
    assert_eq!(w.jobs.sent().len(), 1, "job put back");
    assert_eq!(w.jobs.sent()[0].launch_attempt, 1);
    assert_eq!(
        w.ledger
            .capacity()
            .await
            .unwrap()
            .pools
            .get("cpu")
            .copied()
            .unwrap_or(0),
        0
    );
}
