//! `Ec2Compute` against mocked EC2 answers (aws-smithy-mocks): what moto cannot
//! show — capacity errors in an instant fleet's answer, throttling, and
//! `ClientToken` idempotency as EC2 implements it.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::create_fleet::{CreateFleetError, CreateFleetOutput};
use aws_sdk_ec2::operation::create_tags::{CreateTagsError, CreateTagsOutput};
use aws_sdk_ec2::operation::describe_instances::{
    DescribeInstancesError, DescribeInstancesInput, DescribeInstancesOutput,
};
use aws_sdk_ec2::operation::terminate_instances::{
    TerminateInstancesError, TerminateInstancesOutput,
};
use aws_sdk_ec2::types::{
    CreateFleetError as FleetError, CreateFleetInstance, DefaultTargetCapacityType, FleetType,
    Instance as Ec2Instance, InstanceLifecycle, InstanceLifecycleType, InstanceState,
    InstanceStateName, Reservation, ResourceType, Tag,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use spotrunner_aws_ec2::Ec2Compute;
use spotrunner_core::config::CapacityType;
use spotrunner_core::ports::{Compute, LaunchOutcome, LaunchRequest, PortError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn compute(mode: RuleMode, rules: &[&Rule]) -> Ec2Compute {
    let client: Client = mock_client!(aws_sdk_ec2, mode, rules, |c| c
        .retry_config(RetryConfig::disabled()));
    Ec2Compute::from_client(client)
}

fn request(capacity_type: CapacityType, token: &str) -> LaunchRequest {
    LaunchRequest {
        runner_name: "sr_ubuntu-42".into(),
        pool: "ubuntu".into(),
        launch_template: "sr-ubuntu".into(),
        instance_types: vec!["m7i.large".into(), "m6a.large".into()],
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        capacity_type,
        client_token: token.into(),
        tags: vec![
            ("spotrunner:deployment".into(), "sr".into()),
            ("spotrunner:job-id".into(), "42".into()),
        ],
        size: None,
    }
}

fn fleet_error(code: &str) -> FleetError {
    FleetError::builder()
        .error_code(code)
        .error_message(format!("There is no {code} for you"))
        .lifecycle(InstanceLifecycle::Spot)
        .build()
}

#[tokio::test]
async fn capacity_errors_in_the_answer_are_no_capacity() {
    let rule = mock!(Client::create_fleet).then_output(|| {
        CreateFleetOutput::builder()
            .fleet_id("fleet-1")
            .errors(fleet_error("InsufficientInstanceCapacity"))
            .errors(fleet_error("InsufficientInstanceCapacity"))
            .build()
    });
    let ec2 = compute(RuleMode::Sequential, &[&rule]);
    let out = ec2
        .launch(&request(CapacityType::Spot, "tok-1"))
        .await
        .unwrap();
    assert_eq!(
        out,
        LaunchOutcome::NoCapacity {
            code: "InsufficientInstanceCapacity".into(),
            message: "There is no InsufficientInstanceCapacity for you".into(),
        }
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn capacity_codes_as_service_errors_are_no_capacity() {
    let rule = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("MaxSpotInstanceCountExceeded")
                .message("Max spot instance count exceeded")
                .build(),
        )
    });
    let ec2 = compute(RuleMode::Sequential, &[&rule]);
    let out = ec2
        .launch(&request(CapacityType::Spot, "tok-1"))
        .await
        .unwrap();
    assert_eq!(
        out,
        LaunchOutcome::NoCapacity {
            code: "MaxSpotInstanceCountExceeded".into(),
            message: "Max spot instance count exceeded".into(),
        }
    );
}

#[tokio::test]
async fn request_limit_exceeded_is_throttled() {
    let rule = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .message("Request limit exceeded.")
                .build(),
        )
    });
    let ec2 = compute(RuleMode::Sequential, &[&rule]);
    let err = ec2
        .launch(&request(CapacityType::Spot, "tok-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PortError::Throttled { service: "ec2", .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn other_service_errors_are_rejected() {
    let rule = mock!(Client::create_fleet).then_error(|| {
        CreateFleetError::generic(
            ErrorMetadata::builder()
                .code("InvalidLaunchTemplateName.NotFoundException")
                .message("no such template")
                .build(),
        )
    });
    let ec2 = compute(RuleMode::Sequential, &[&rule]);
    let err = ec2
        .launch(&request(CapacityType::Spot, "tok-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    assert!(!err.is_transient());
}

/// EC2 answers a repeated `ClientToken` with the first call's result. The adapter
/// must send the request's token, and the fleet it asks for must be the one
/// the design describes.
#[tokio::test]
async fn same_client_token_same_instance_and_request_shape() {
    let by_token: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let seen = by_token.clone();
    let rule = mock!(Client::create_fleet)
        .match_requests(|r| {
            let spec = r.target_capacity_specification().unwrap();
            let config = &r.launch_template_configs()[0];
            let lt = config.launch_template_specification().unwrap();
            let tags = &r.tag_specifications()[0];
            r.r#type() == Some(&FleetType::Instant)
                && spec.total_target_capacity() == Some(1)
                && spec.default_target_capacity_type() == Some(&DefaultTargetCapacityType::Spot)
                && lt.launch_template_name() == Some("sr-ubuntu")
                && lt.version() == Some("$Default")
                && config.overrides().len() == 4
                && r.spot_options()
                    .unwrap()
                    .allocation_strategy()
                    .unwrap()
                    .as_str()
                    == "price-capacity-optimized"
                && r.on_demand_options()
                    .unwrap()
                    .allocation_strategy()
                    .unwrap()
                    .as_str()
                    == "lowest-price"
                && tags.resource_type() == Some(&ResourceType::Instance)
                && tags
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some("spotrunner:job-id") && t.value() == Some("42"))
        })
        .then_compute_output(move |r| {
            let token = r.client_token().expect("client token sent").to_string();
            let mut seen = seen.lock().unwrap();
            let n = seen.len();
            let id = seen
                .entry(token)
                .or_insert_with(|| format!("i-{n:017x}"))
                .clone();
            CreateFleetOutput::builder()
                .fleet_id("fleet-1")
                .instances(
                    CreateFleetInstance::builder()
                        .instance_ids(id)
                        .lifecycle(InstanceLifecycle::Spot)
                        .build(),
                )
                .build()
        });
    let ec2 = compute(RuleMode::MatchAny, &[&rule]);
    let first = ec2
        .launch(&request(CapacityType::Spot, "sr-job-42-a0"))
        .await
        .unwrap();
    let again = ec2
        .launch(&request(CapacityType::Spot, "sr-job-42-a0"))
        .await
        .unwrap();
    let other = ec2
        .launch(&request(CapacityType::Spot, "sr-job-43-a0"))
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_ne!(first, other);
    assert!(matches!(
        first,
        LaunchOutcome::Launched {
            capacity_type: CapacityType::Spot,
            ..
        }
    ));
    assert_eq!(rule.num_calls(), 3);
    assert_eq!(by_token.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn on_demand_request_asks_for_on_demand() {
    let rule = mock!(Client::create_fleet)
        .match_requests(|r| {
            r.target_capacity_specification()
                .and_then(|s| s.default_target_capacity_type())
                == Some(&DefaultTargetCapacityType::OnDemand)
        })
        .then_output(|| {
            CreateFleetOutput::builder()
                .instances(
                    CreateFleetInstance::builder()
                        .instance_ids("i-0123")
                        .lifecycle(InstanceLifecycle::OnDemand)
                        .build(),
                )
                .build()
        });
    let ec2 = compute(RuleMode::Sequential, &[&rule]);
    let out = ec2
        .launch(&request(CapacityType::OnDemand, "tok"))
        .await
        .unwrap();
    assert_eq!(
        out,
        LaunchOutcome::Launched {
            instance_id: "i-0123".into(),
            capacity_type: CapacityType::OnDemand
        }
    );
}

#[tokio::test]
async fn terminate_of_a_gone_instance_in_a_batch_terminates_the_rest() {
    let not_found = || {
        TerminateInstancesError::generic(
            ErrorMetadata::builder()
                .code("InvalidInstanceID.NotFound")
                .message("The instance ID 'i-gone' does not exist")
                .build(),
        )
    };
    let batch = mock!(Client::terminate_instances)
        .match_requests(|r| r.instance_ids().len() == 2)
        .then_error(not_found);
    let gone = mock!(Client::terminate_instances)
        .match_requests(|r| r.instance_ids() == ["i-gone"])
        .then_error(not_found);
    let live = mock!(Client::terminate_instances)
        .match_requests(|r| r.instance_ids() == ["i-live"])
        .then_output(|| TerminateInstancesOutput::builder().build());
    let ec2 = compute(RuleMode::MatchAny, &[&batch, &gone, &live]);
    ec2.terminate(&["i-gone".into(), "i-live".into()])
        .await
        .unwrap();
    assert_eq!(
        (batch.num_calls(), gone.num_calls(), live.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn tag_instance_sends_the_tag_and_a_gone_instance_is_not_found() {
    let ok = mock!(Client::create_tags)
        .match_requests(|r| {
            r.resources() == ["i-live"]
                && r.tags().len() == 1
                && r.tags()[0].key() == Some("spotrunner:tainted")
                && r.tags()[0].value() == Some("boot-timeout")
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let gone = mock!(Client::create_tags)
        .match_requests(|r| r.resources() == ["i-gone"])
        .then_error(|| {
            CreateTagsError::generic(
                ErrorMetadata::builder()
                    .code("InvalidInstanceID.NotFound")
                    .message("The instance ID 'i-gone' does not exist")
                    .build(),
            )
        });
    let ec2 = compute(RuleMode::MatchAny, &[&ok, &gone]);
    ec2.tag_instance("i-live", "spotrunner:tainted", "boot-timeout")
        .await
        .unwrap();
    let err = ec2
        .tag_instance("i-gone", "spotrunner:tainted", "boot-timeout")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    assert_eq!((ok.num_calls(), gone.num_calls()), (1, 1));
}

fn mismatch_error() -> CreateFleetError {
    CreateFleetError::generic(
        ErrorMetadata::builder()
            .code("IdempotentParameterMismatch")
            .message("The client token you have provided is associated with a resource that is already deleted. Please use a different client token.")
            .build(),
    )
}

/// The lookup after a mismatch: this deployment's instance of this runner, in
/// a live state only.
fn is_runner_lookup(r: &DescribeInstancesInput) -> bool {
    let values = |name: &str| {
        r.filters()
            .iter()
            .find(|f| f.name() == Some(name))
            .map(|f| f.values().to_vec())
            .unwrap_or_default()
    };
    let states = values("instance-state-name");
    r.instance_ids().is_empty()
        && values("tag:spotrunner:deployment") == ["sr"]
        && values("tag:spotrunner:runner-name") == ["sr_ubuntu-42"]
        && states.iter().any(|s| s == "running")
        && states.iter().any(|s| s == "pending")
        && !states
            .iter()
            .any(|s| s == "terminated" || s == "shutting-down")
}

fn runner_instance(id: &str) -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder()
        .reservations(
            Reservation::builder()
                .instances(
                    Ec2Instance::builder()
                        .instance_id(id)
                        .instance_lifecycle(InstanceLifecycleType::Spot)
                        .state(
                            InstanceState::builder()
                                .name(InstanceStateName::Running)
                                .build(),
                        )
                        .tags(
                            Tag::builder()
                                .key("spotrunner:deployment")
                                .value("sr")
                                .build(),
                        )
                        .tags(
                            Tag::builder()
                                .key("spotrunner:runner-name")
                                .value("sr_ubuntu-42")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build()
}

/// A retry whose request differs from the first call under the same
/// `ClientToken` (issue 10): EC2 answers `IdempotentParameterMismatch`, as an
/// error or in the fleet's `Errors`. The VM the first call started is found by
/// its tags and reported launched: never a refusal, which would be undone.
#[tokio::test]
async fn a_token_mismatch_finds_the_first_vm_by_its_tags() {
    let as_error = mock!(Client::create_fleet).then_error(mismatch_error);
    let in_answer = mock!(Client::create_fleet).then_output(|| {
        CreateFleetOutput::builder()
            .fleet_id("fleet-2")
            .errors(fleet_error("IdempotentParameterMismatch"))
            .build()
    });
    for fleet in [&as_error, &in_answer] {
        let describe = mock!(Client::describe_instances)
            .match_requests(is_runner_lookup)
            .then_output(|| runner_instance("i-0000000000000first"));
        let ec2 = compute(RuleMode::MatchAny, &[fleet, &describe]);
        let out = ec2
            .launch(&request(CapacityType::Spot, "sr-42-0-spot"))
            .await
            .unwrap();
        assert_eq!(
            out,
            LaunchOutcome::Launched {
                instance_id: "i-0000000000000first".into(),
                capacity_type: CapacityType::Spot,
            }
        );
        assert_eq!((fleet.num_calls(), describe.num_calls()), (1, 1));
    }
}

/// No VM of the runner (not visible yet, or never started), or the lookup
/// itself refused: a transient error, so the caller keeps its reservation and
/// retries, and an `error!` line with `metric = "launch_token_mismatch"` alarms.
#[tokio::test]
async fn a_token_mismatch_without_a_vm_is_transient_never_rejected() {
    let fleet = mock!(Client::create_fleet).then_error(mismatch_error);
    let none = mock!(Client::describe_instances)
        .match_requests(is_runner_lookup)
        .then_output(|| DescribeInstancesOutput::builder().build());
    let ec2 = compute(RuleMode::MatchAny, &[&fleet, &none]);
    let err = ec2
        .launch(&request(CapacityType::Spot, "sr-42-0-spot"))
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("IdempotentParameterMismatch") && text.contains("sr-42-0-spot"),
        "{text}"
    );
    assert_eq!(none.num_calls(), 1);

    let fleet = mock!(Client::create_fleet).then_error(mismatch_error);
    let refused = mock!(Client::describe_instances).then_error(|| {
        DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("UnauthorizedOperation")
                .message("You are not authorized to perform this operation.")
                .build(),
        )
    });
    let ec2 = compute(RuleMode::MatchAny, &[&fleet, &refused]);
    let err = ec2
        .launch(&request(CapacityType::Spot, "sr-42-0-spot"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("UnauthorizedOperation"), "{err}");
}
