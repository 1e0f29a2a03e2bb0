//! The `CreateFleet` (type `instant`) request for one runner, and how its answer
//! becomes a [`LaunchOutcome`].

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::operation::create_fleet::builders::CreateFleetFluentBuilder;
use aws_sdk_ec2::types::{
    DefaultTargetCapacityType, FleetLaunchTemplateConfigRequest,
    FleetLaunchTemplateOverridesRequest, FleetLaunchTemplateSpecificationRequest,
    FleetOnDemandAllocationStrategy, FleetType, InstanceLifecycle, InstanceRequirementsRequest,
    InstanceType, MemoryMiBRequest, OnDemandOptionsRequest, ResourceType, SpotAllocationStrategy,
    SpotOptionsRequest, Tag, TagSpecification, TargetCapacitySpecificationRequest,
    VCpuCountRangeRequest,
};
use spotrunner_aws::error::IDEMPOTENT_PARAMETER_MISMATCH;
use spotrunner_core::config::CapacityType;
use spotrunner_core::ports::PortError;
use spotrunner_core::ports::{InstanceSize, LaunchOutcome, LaunchRequest};
use std::time::Duration;

/// Error codes that mean "no capacity of this kind right now": try again later,
/// elsewhere, or with the other capacity type.
pub const CAPACITY_ERROR_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientFreeAddressesInSubnet",
    "MaxSpotInstanceCountExceeded",
    "MaxSpotFleetRequestCountExceeded",
    "SpotMaxPriceTooLow",
    "UnfulfillableCapacity",
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
];

const THROTTLING_CODES: &[&str] = &["RequestLimitExceeded", "Throttling", "ThrottlingException"];

pub fn is_capacity_code(code: &str) -> bool {
    CAPACITY_ERROR_CODES.contains(&code)
}

/// When an instant fleet launched nothing because its `ClientToken` was used
/// before with other parameters (in the answer's `Errors`), that error's message.
pub(crate) fn token_mismatch(out: &CreateFleetOutput) -> Option<&str> {
    if out.instances().iter().any(|i| !i.instance_ids().is_empty()) {
        return None;
    }
    out.errors()
        .iter()
        .find(|e| e.error_code() == Some(IDEMPOTENT_PARAMETER_MISMATCH))
        .map(|e| e.error_message().unwrap_or_default())
}

/// The request: one unit of `req.capacity_type` over instance types × subnets
/// of the launch template's default version.
///
/// A pure function of `req`, in `req`'s order (tags as given, overrides types ×
/// subnets): nothing here may depend on the time or on chance, because a retry
/// reuses the `ClientToken` and EC2 refuses a known token with other
/// parameters (`IdempotentParameterMismatch`).
pub(crate) fn create_fleet(client: &Client, req: &LaunchRequest) -> CreateFleetFluentBuilder {
    let default_type = match req.capacity_type {
        CapacityType::Spot => DefaultTargetCapacityType::Spot,
        CapacityType::OnDemand => DefaultTargetCapacityType::OnDemand,
    };
    let tags: Vec<Tag> = req
        .tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let mut builder = client
        .create_fleet()
        .r#type(FleetType::Instant)
        .client_token(&req.client_token)
        .target_capacity_specification(
            TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(1)
                .default_target_capacity_type(default_type)
                .build(),
        )
        .launch_template_configs(
            FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_name(&req.launch_template)
                        .version("$Default")
                        .build(),
                )
                .set_overrides(Some(overrides(req)))
                .build(),
        )
        .spot_options(
            SpotOptionsRequest::builder()
                .allocation_strategy(SpotAllocationStrategy::PriceCapacityOptimized)
                .build(),
        )
        .on_demand_options(
            OnDemandOptionsRequest::builder()
                .allocation_strategy(FleetOnDemandAllocationStrategy::LowestPrice)
                .build(),
        );
    if !tags.is_empty() {
        // Instant fleets accept `fleet` and `instance` here, not `volume`:
        // volume tags come from the launch template.
        builder = builder.tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(tags))
                .build(),
        );
    }
    builder
}

/// EC2's attribute-based instance type selection for a sized job: exactly
/// its vCPU range, its memory range, among the allowed type patterns.
fn instance_requirements(size: &InstanceSize) -> InstanceRequirementsRequest {
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let memory = MemoryMiBRequest::builder()
        .min(int(size.memory_mib_min))
        .set_max(size.memory_mib_max.map(int))
        .build();
    let allowed =
        (!size.allowed_instance_types.is_empty()).then(|| size.allowed_instance_types.clone());
    InstanceRequirementsRequest::builder()
        .v_cpu_count(
            VCpuCountRangeRequest::builder()
                .min(int(size.vcpu_min))
                .max(int(size.vcpu_max))
                .build(),
        )
        .memory_mib(memory)
        .set_allowed_instance_types(allowed)
        .build()
}

/// Instance types × subnets; either list may be empty (then the launch template decides).
/// A sized request has one override per subnet with its instance requirements
/// instead (EC2 takes either a type or requirements in an override, not both).
fn overrides(req: &LaunchRequest) -> Vec<FleetLaunchTemplateOverridesRequest> {
    if let Some(size) = &req.size {
        let requirements = instance_requirements(size);
        let subnets: Vec<Option<&str>> = if req.subnets.is_empty() {
            vec![None]
        } else {
            req.subnets.iter().map(|s| Some(s.as_str())).collect()
        };
        return subnets
            .into_iter()
            .map(|s| {
                FleetLaunchTemplateOverridesRequest::builder()
                    .instance_requirements(requirements.clone())
                    .set_subnet_id(s.map(str::to_string))
                    .build()
            })
            .collect();
    }
    let types: Vec<Option<&str>> = if req.instance_types.is_empty() {
        vec![None]
    } else {
        req.instance_types
            .iter()
            .map(|t| Some(t.as_str()))
            .collect()
    };
    let subnets: Vec<Option<&str>> = if req.subnets.is_empty() {
        vec![None]
    } else {
        req.subnets.iter().map(|s| Some(s.as_str())).collect()
    };
    let mut out = Vec::new();
    for t in &types {
        for s in &subnets {
            if t.is_none() && s.is_none() {
                continue;
            }
            out.push(
                FleetLaunchTemplateOverridesRequest::builder()
                    .set_instance_type(t.map(InstanceType::from))
                    .set_subnet_id(s.map(str::to_string))
                    .build(),
            );
        }
    }
    out
}

/// What an instant fleet's answer means. Capacity problems come back in
/// `Errors` (one per override tried), not as an SDK error.
pub fn fleet_outcome(
    out: &CreateFleetOutput,
    req: &LaunchRequest,
) -> Result<LaunchOutcome, PortError> {
    let launched = out
        .instances()
        .iter()
        .flat_map(|i| i.instance_ids().iter().map(move |id| (i, id)))
        .collect::<Vec<_>>();
    if let Some((first, instance_id)) = launched.first() {
        if launched.len() > 1 {
            tracing::warn!(
                runner = %req.runner_name,
                instances = ?launched.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>(),
                "fleet launched more than one instance for one runner"
            );
        }
        let capacity_type = match first.lifecycle() {
            Some(InstanceLifecycle::Spot) => CapacityType::Spot,
            Some(InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
            _ => req.capacity_type,
        };
        return Ok(LaunchOutcome::Launched {
            instance_id: instance_id.to_string(),
            capacity_type,
        });
    }
    let errors: Vec<(&str, &str)> = out
        .errors()
        .iter()
        .map(|e| {
            (
                e.error_code().unwrap_or("Unknown"),
                e.error_message().unwrap_or_default(),
            )
        })
        .collect();
    let what = format!("launch runner {}", req.runner_name);
    if let Some((code, message)) = errors.iter().find(|(c, _)| is_capacity_code(c)) {
        tracing::info!(runner = %req.runner_name, pool = %req.pool, %code, %message, "no capacity");
        return Ok(LaunchOutcome::NoCapacity {
            code: code.to_string(),
            message: message.to_string(),
        });
    }
    if errors.iter().any(|(c, _)| THROTTLING_CODES.contains(c)) {
        return Err(PortError::Throttled {
            service: "ec2",
            retry_after: Duration::from_secs(1),
        });
    }
    let summary = errors
        .iter()
        .map(|(c, m)| format!("{c}: {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    match errors.first() {
        None => Err(PortError::unavailable(
            "ec2",
            format!(
                "{what}: fleet {} launched nothing and reported no error",
                out.fleet_id().unwrap_or("?")
            ),
        )),
        // A mismatch is transient, never a refusal: a VM may run under the
        // token (see `spotrunner_aws::error::IDEMPOTENT_PARAMETER_MISMATCH`).
        Some((c, _))
            if c.starts_with("Internal")
                || c.contains("Unavailable")
                || *c == IDEMPOTENT_PARAMETER_MISMATCH =>
        {
            Err(PortError::unavailable("ec2", format!("{what}: {summary}")))
        }
        Some(_) => Err(PortError::rejected("ec2", format!("{what}: {summary}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{CreateFleetError, CreateFleetInstance};

    fn req(capacity_type: CapacityType) -> LaunchRequest {
        LaunchRequest {
            runner_name: "sr_ubuntu-1".into(),
            pool: "ubuntu".into(),
            launch_template: "sr-ubuntu".into(),
            instance_types: vec!["m7i.large".into(), "m6i.large".into()],
            subnets: vec!["subnet-a".into(), "subnet-b".into(), "subnet-c".into()],
            capacity_type,
            client_token: "sr-job-1-0".into(),
            tags: vec![("spotrunner:deployment".into(), "sr".into())],
            size: None,
        }
    }

    fn sized(mut r: LaunchRequest) -> LaunchRequest {
        r.size = Some(InstanceSize {
            vcpu_min: 8,
            vcpu_max: 8,
            memory_mib_min: 32 * 1024,
            memory_mib_max: Some(64 * 1024),
            allowed_instance_types: vec!["m7i.*".into(), "c7i.*".into()],
        });
        r
    }

    #[test]
    fn a_sized_request_asks_its_requirements_once_per_subnet_and_no_type() {
        let o = overrides(&sized(req(CapacityType::Spot)));
        assert_eq!(o.len(), 3, "one per subnet");
        for (o, subnet) in o.iter().zip(["subnet-a", "subnet-b", "subnet-c"]) {
            assert_eq!(o.subnet_id(), Some(subnet));
            assert_eq!(o.instance_type(), None);
            let ir = o.instance_requirements().expect("requirements");
            let v = ir.v_cpu_count().unwrap();
            assert_eq!((v.min(), v.max()), (Some(8), Some(8)));
            let m = ir.memory_mib().unwrap();
            assert_eq!((m.min(), m.max()), (Some(32768), Some(65536)));
            assert_eq!(ir.allowed_instance_types(), ["m7i.*", "c7i.*"]);
        }
        let mut r = sized(req(CapacityType::Spot));
        r.subnets.clear();
        r.size.as_mut().unwrap().allowed_instance_types.clear();
        r.size.as_mut().unwrap().memory_mib_max = None;
        let o = overrides(&r);
        assert_eq!(o.len(), 1);
        let ir = o[0].instance_requirements().unwrap();
        assert!(ir.allowed_instance_types().is_empty());
        assert_eq!(ir.memory_mib().unwrap().max(), None);
    }

    fn error(code: &str) -> CreateFleetError {
        CreateFleetError::builder()
            .error_code(code)
            .error_message(format!("{code} message"))
            .build()
    }

    #[test]
    fn the_request_depends_on_nothing_but_the_launch_request() {
        let client = Client::from_conf(
            aws_sdk_ec2::Config::builder()
                .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
                .build(),
        );
        for r in [req(CapacityType::Spot), sized(req(CapacityType::Spot))] {
            let first = create_fleet(&client, &r).as_input().clone();
            std::thread::sleep(Duration::from_millis(2));
            let again = create_fleet(&client, &r.clone()).as_input().clone();
            assert_eq!(first, again);
            assert_eq!(first.get_client_token().as_deref(), Some("sr-job-1-0"));
        }
    }

    #[test]
    fn a_token_mismatch_in_the_answer_is_seen_and_never_rejected() {
        let out = CreateFleetOutput::builder()
            .errors(error(IDEMPOTENT_PARAMETER_MISMATCH))
            .build();
        assert_eq!(
            token_mismatch(&out),
            Some("IdempotentParameterMismatch message")
        );
        let e = fleet_outcome(&out, &req(CapacityType::Spot)).unwrap_err();
        assert!(e.is_transient(), "{e:?}");

        let launched = CreateFleetOutput::builder()
            .instances(CreateFleetInstance::builder().instance_ids("i-1").build())
            .errors(error(IDEMPOTENT_PARAMETER_MISMATCH))
            .build();
        assert_eq!(token_mismatch(&launched), None);
        let other = CreateFleetOutput::builder()
            .errors(error("InternalError"))
            .build();
        assert_eq!(token_mismatch(&other), None);
    }

    #[test]
    fn overrides_are_the_cross_product() {
        let o = overrides(&req(CapacityType::Spot));
        assert_eq!(o.len(), 6);
        assert_eq!(o[0].instance_type().map(|t| t.as_str()), Some("m7i.large"));
        assert_eq!(o[0].subnet_id(), Some("subnet-a"));
        assert_eq!(o[5].instance_type().map(|t| t.as_str()), Some("m6i.large"));
        assert_eq!(o[5].subnet_id(), Some("subnet-c"));
    }

    #[test]
    fn overrides_with_no_subnets_or_types() {
        let mut r = req(CapacityType::Spot);
        r.subnets.clear();
        assert_eq!(overrides(&r).len(), 2);
        assert!(overrides(&r).iter().all(|o| o.subnet_id().is_none()));
        r.instance_types.clear();
        assert!(overrides(&r).is_empty());
    }

    #[test]
    fn instance_wins_over_errors() {
        let out = CreateFleetOutput::builder()
            .instances(
                CreateFleetInstance::builder()
                    .instance_ids("i-1")
                    .lifecycle(InstanceLifecycle::OnDemand)
                    .build(),
            )
            .errors(error("InsufficientInstanceCapacity"))
            .build();
        assert_eq!(
            fleet_outcome(&out, &req(CapacityType::Spot)).unwrap(),
            LaunchOutcome::Launched {
                instance_id: "i-1".into(),
                capacity_type: CapacityType::OnDemand
            }
        );
    }

    #[test]
    fn capacity_errors_are_no_capacity() {
        for code in CAPACITY_ERROR_CODES {
            let out = CreateFleetOutput::builder()
                .errors(error("InvalidSubnetID.NotFound"))
                .errors(error(code))
                .build();
            assert_eq!(
                fleet_outcome(&out, &req(CapacityType::Spot)).unwrap(),
                LaunchOutcome::NoCapacity {
                    code: code.to_string(),
                    message: format!("{code} message")
                }
            );
        }
    }

    #[test]
    fn other_errors_are_port_errors() {
        let out = CreateFleetOutput::builder()
            .errors(error("InvalidLaunchTemplateName.NotFoundException"))
            .build();
        let e = fleet_outcome(&out, &req(CapacityType::Spot)).unwrap_err();
        assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
        assert!(e.to_string().contains("InvalidLaunchTemplateName"), "{e}");

        let out = CreateFleetOutput::builder()
            .errors(error("RequestLimitExceeded"))
            .build();
        assert!(matches!(
            fleet_outcome(&out, &req(CapacityType::Spot)).unwrap_err(),
            PortError::Throttled { .. }
        ));

        let out = CreateFleetOutput::builder()
            .errors(error("InternalError"))
            .build();
        assert!(
            fleet_outcome(&out, &req(CapacityType::Spot))
                .unwrap_err()
                .is_transient()
        );

        let out = CreateFleetOutput::builder().fleet_id("fleet-1").build();
        let e = fleet_outcome(&out, &req(CapacityType::Spot)).unwrap_err();
        assert!(e.is_transient() && e.to_string().contains("fleet-1"), "{e}");
    }
}
