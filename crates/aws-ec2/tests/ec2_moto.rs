//! `Ec2Compute` against moto: launch through an instant fleet, tags, listing by
//! deployment, tagging, terminating twice.
//!
//! moto ignores `ClientToken` on `CreateFleet` (every call launches) and accepts
//! `CreateTags` on unknown instances, so idempotency and tagging a gone instance
//! are covered in `ec2_mocks.rs`.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData};
use spotrunner_aws_ec2::Ec2Compute;
use spotrunner_core::config::CapacityType;
use spotrunner_core::ports::{Compute, InstanceSize, LaunchOutcome, LaunchRequest, tags};
use spotrunner_testkit::moto;

struct Env {
    _moto: moto::SharedMoto,
    ec2: Client,
    compute: Ec2Compute,
    subnets: Vec<String>,
}

async fn env() -> Env {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ec2 = Client::new(&sdk);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .expect("create vpc")
        .vpc
        .and_then(|v| v.vpc_id)
        .expect("vpc id");
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.0.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .expect("create subnet")
            .subnet
            .and_then(|s| s.subnet_id)
            .expect("subnet id");
        subnets.push(subnet);
    }
    let image = ec2
        .describe_images()
        .send()
        .await
        .expect("describe images")
        .images()
        .iter()
        .find_map(|i| i.image_id().map(str::to_string))
        .expect("moto has images");
    ec2.create_launch_template()
        .launch_template_name("sr-ubuntu")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .expect("create launch template");
    Env {
        _moto: moto,
        compute: Ec2Compute::new(&sdk),
        ec2,
        subnets,
    }
}

impl Env {
    fn request(
        &self,
        deployment: &str,
        runner: &str,
        capacity_type: CapacityType,
    ) -> LaunchRequest {
        LaunchRequest {
            runner_name: runner.into(),
            pool: "ubuntu".into(),
            launch_template: "sr-ubuntu".into(),
            instance_types: vec!["m7i.large".into(), "m6a.large".into()],
            subnets: self.subnets.clone(),
            capacity_type,
            client_token: format!("{runner}-token"),
            tags: vec![
                (tags::DEPLOYMENT.into(), deployment.into()),
                (tags::POOL.into(), "ubuntu".into()),
                (tags::RUNNER_NAME.into(), runner.into()),
                (tags::JOB_ID.into(), "42".into()),
            ],
            size: None,
        }
    }

    async fn launch(&self, req: &LaunchRequest) -> String {
        match self.compute.launch(req).await.expect("launch") {
            LaunchOutcome::Launched {
                instance_id,
                capacity_type,
            } => {
                assert_eq!(capacity_type, req.capacity_type);
                instance_id
            }
            other => panic!("expected a launch, got {other:?}"),
        }
    }

    async fn instance(&self, id: &str) -> aws_sdk_ec2::types::Instance {
        self.ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("describe instance")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
            .expect("instance listed")
    }
}

#[tokio::test]
async fn launch_tags_and_places_one_instance() {
    let env = env().await;
    let req = env.request("sr", "sr_ubuntu-1", CapacityType::Spot);
    let id = env.launch(&req).await;

    let all = env.ec2.describe_instances().send().await.unwrap();
    let count: usize = all.reservations().iter().map(|r| r.instances().len()).sum();
    assert_eq!(count, 1, "one launch, one instance");

    let i = env.instance(&id).await;
    let tag = |k: &str| {
        i.tags()
            .iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .map(str::to_string)
    };
    assert_eq!(tag(tags::DEPLOYMENT).as_deref(), Some("sr"));
    assert_eq!(tag(tags::RUNNER_NAME).as_deref(), Some("sr_ubuntu-1"));
    assert_eq!(tag(tags::JOB_ID).as_deref(), Some("42"));
    let itype = i.instance_type().unwrap().as_str().to_string();
    assert!(
        req.instance_types.contains(&itype),
        "{itype} is one of the overrides"
    );
    let subnet = i.subnet_id().unwrap().to_string();
    assert!(
        env.subnets.contains(&subnet),
        "{subnet} is one of the overrides"
    );
    assert_eq!(
        i.instance_lifecycle().map(|l| l.as_str()),
        Some("spot"),
        "spot request gives a spot instance"
    );
}

#[tokio::test]
async fn on_demand_launch() {
    let env = env().await;
    let id = env
        .launch(&env.request("sr", "sr_ubuntu-2", CapacityType::OnDemand))
        .await;
    let i = env.instance(&id).await;
    assert_ne!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
}

#[tokio::test]
async fn list_by_deployment_tag_and_terminate_twice() {
    let env = env().await;
    let ours = env
        .launch(&env.request("sr", "sr_ubuntu-1", CapacityType::Spot))
        .await;
    let theirs = env
        .launch(&env.request("other", "other-ubuntu-1", CapacityType::Spot))
        .await;

    let listed = env.compute.list_instances("sr").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect::<Vec<_>>(),
        [ours.as_str()]
    );
    let i = &listed[0];
    assert!(i.is_live(), "state {}", i.state);
    assert!(
        matches!(i.state.as_str(), "pending" | "running"),
        "{}",
        i.state
    );
    assert!(i.launched_at.is_some());
    assert_eq!(i.tag(tags::RUNNER_NAME), Some("sr_ubuntu-1"));
    assert_eq!(i.tag(tags::POOL), Some("ubuntu"));

    env.compute
        .tag_instance(&ours, tags::TAINTED, "boot-timeout")
        .await
        .unwrap();
    let listed = env.compute.list_instances("sr").await.unwrap();
    assert_eq!(listed[0].tag(tags::TAINTED), Some("boot-timeout"));

    env.compute
        .terminate(std::slice::from_ref(&ours))
        .await
        .unwrap();
    env.compute
        .terminate(std::slice::from_ref(&ours))
        .await
        .unwrap();
    let listed = env.compute.list_instances("sr").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, "terminated");
    assert!(!listed[0].is_live());

    let other = env.compute.list_instances("other").await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].instance_id, theirs);
    assert!(other[0].is_live(), "the other deployment is untouched");
}

#[tokio::test]
async fn terminate_unknown_instances_is_ok_and_live_ones_still_end() {
    let env = env().await;
    let live = env
        .launch(&env.request("sr", "sr_ubuntu-1", CapacityType::Spot))
        .await;
    env.compute
        .terminate(&["i-0123456789abcdef0".into()])
        .await
        .unwrap();
    env.compute
        .terminate(&["i-0123456789abcdef0".into(), live.clone()])
        .await
        .unwrap();
    env.compute.terminate(&[]).await.unwrap();
    let i = env.instance(&live).await;
    assert_eq!(
        i.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("terminated")
    );
}

#[tokio::test]
async fn list_reads_every_page() {
    let env = env().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(
            env.launch(&env.request("sr", &format!("sr_ubuntu-{n}"), CapacityType::OnDemand))
                .await,
        );
    }
    // Each fleet is its own reservation: 7 reservations in pages of 5.
    let listed = env
        .compute
        .clone()
        .with_page_size(5)
        .list_instances("sr")
        .await
        .unwrap();
    let mut got: Vec<_> = listed.into_iter().map(|i| i.instance_id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
}

/// A job asking `spotrunner/cpu=8` in a 2–16 vCPU pool: the CreateFleet request
/// moto receives asks exactly 8 vCPUs, once per subnet, among the pool's
/// families, and names no instance type. (moto launches the template's type
/// whatever the requirements; EC2 would choose a type with 8 vCPUs.)
#[tokio::test]
async fn a_sized_launch_sends_its_instance_requirements() {
    let env = env().await;
    let mut req = env.request("sr", "sr_ubuntu-8", CapacityType::Spot);
    req.size = Some(InstanceSize {
        vcpu_min: 8,
        vcpu_max: 8,
        memory_mib_min: 4096,
        memory_mib_max: Some(65536),
        allowed_instance_types: vec!["m7i.*".into(), "m6a.*".into()],
    });
    env.launch(&req).await;

    let fleets = env
        .ec2
        .describe_fleets()
        .send()
        .await
        .expect("describe fleets");
    assert_eq!(fleets.fleets().len(), 1);
    let configs = fleets.fleets()[0].launch_template_configs();
    assert_eq!(configs.len(), 1);
    let overrides = configs[0].overrides();
    assert_eq!(
        overrides.len(),
        env.subnets.len(),
        "one override per subnet"
    );
    for (o, subnet) in overrides.iter().zip(&env.subnets) {
        assert_eq!(o.subnet_id(), Some(subnet.as_str()));
        assert_eq!(o.instance_type(), None, "requirements, not a type");
        let ir = o
            .instance_requirements()
            .expect("instance requirements received");
        let vcpu = ir.v_cpu_count().expect("vCPU count");
        assert_eq!((vcpu.min(), vcpu.max()), (Some(8), Some(8)));
        let mem = ir.memory_mib().expect("memory");
        assert_eq!((mem.min(), mem.max()), (Some(4096), Some(65536)));
        assert_eq!(ir.allowed_instance_types(), ["m7i.*", "m6a.*"]);
    }
}
