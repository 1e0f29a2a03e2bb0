//! Per-job sizing through create-runner (`crate::sizing`): the launch asks the
//! job's size, the runner weighs by it, registers with the job's sizing labels,
//! and `spot=false` launches on-demand.

use super::JobOutcome;
use super::tests::{config, fixed_now, job, world};
use crate::config::{CapacityType, Config};
use crate::ports::{LaunchRequest, Ledger, PortError, tags};
use chrono::Duration as CDuration;

/// A pool of 2- to 16-vCPU types, sized within 2–16 vCPUs: weight 1 is a
/// 2-vCPU runner, so 8 vCPUs weigh 4.
const SIZED_POOL: &str = r#"
[[pools]]
name = "sized"
labels = ["linux", "sized"]
launch_template = "sr-sized"
instance_types = ["m7i.large", "m7i.2xlarge", "c7i.4xlarge"]
subnets = ["subnet-1", "subnet-2"]
max_runners = 10
sizing = { cpu = [2, 16], ram_gib = [4, 64], disk_gib = 100 }
"#;

fn sized_config(max_total_weight: u32) -> Config {
    let text = config(SIZED_POOL).to_json().replace(
        "\"max_total_weight\": 100",
        &format!("\"max_total_weight\": {max_total_weight}"),
    );
    // gpu's weight 4 must stay within the quota.
    Config::from_json(&text).unwrap()
}

fn sized_job(id: u64, sizing: &[&str]) -> crate::job::JobMessage {
    let mut msg = job(id, "sized");
    msg.labels = vec!["self-hosted".into(), "linux".into(), "sized".into()];
    msg.labels.extend(sizing.iter().map(|s| s.to_string()));
    msg
}

fn requests(w: &super::tests::World) -> Vec<LaunchRequest> {
    w.compute
        .state
        .lock()
        .unwrap()
        .tokens
        .values()
        .map(|(_, r)| r.clone())
        .collect()
}

#[tokio::test]
async fn eight_cpus_in_a_two_to_sixteen_pool_launch_eight_and_weigh_by_size() {
    let w = world(sized_config(100));
    let out =
        w.cr.handle_job(&sized_job(8, &["spotrunner/cpu=8"]), fixed_now())
            .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");

    let reqs = requests(&w);
    assert_eq!(reqs.len(), 1);
    let size = reqs[0].size.as_ref().expect("a sized request");
    assert_eq!((size.vcpu_min, size.vcpu_max), (8, 8));
    assert_eq!(size.memory_mib_min, 4 * 1024);
    assert_eq!(size.allowed_instance_types, vec!["m7i.*", "c7i.*"]);
    assert_eq!(reqs[0].capacity_type, CapacityType::Spot);
    assert!(
        reqs[0]
            .tags
            .contains(&(tags::SIZE.to_string(), "cpu=8".to_string())),
        "{:?}",
        reqs[0].tags
    );

    // Weighed by size, on the record too: release gives back the same.
    let runner = w.ledger.get_runner("sr_sized-8-0").await.unwrap().unwrap();
    assert_eq!(runner.weight, 4);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 4);
    // Registered with the pool's labels and the job's sizing label.
    assert_eq!(
        w.github.runners()[0].labels,
        vec!["self-hosted", "linux", "sized", "spotrunner/cpu=8"]
    );
    assert!(
        w.ledger
            .release("sr_sized-8-0", "test", fixed_now())
            .await
            .unwrap()
    );
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 0);
}

#[tokio::test]
async fn an_unsized_job_of_a_sized_pool_launches_the_pools_types_at_the_pools_weight() {
    let w = world(sized_config(100));
    let out = w.cr.handle_job(&sized_job(3, &[]), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let reqs = requests(&w);
    assert_eq!(reqs[0].size, None);
    assert_eq!(reqs[0].instance_types.len(), 3);
    assert!(reqs[0].tags.iter().all(|(k, _)| k != tags::SIZE));
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 1);
    assert_eq!(
        w.github.runners()[0].labels,
        vec!["self-hosted", "linux", "sized"]
    );
}

#[tokio::test]
async fn the_global_quota_holds_by_size() {
    // 10: two 8-vCPU runners (4 + 4) fit, a third waits; a 2-vCPU one fits.
    let w = world(sized_config(10));
    let now = fixed_now();
    for id in [1, 2] {
        let out =
            w.cr.handle_job(&sized_job(id, &["spotrunner/cpu=8"]), now)
                .await;
        assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    }
    let out =
        w.cr.handle_job(&sized_job(3, &["spotrunner/cpu=8"]), now)
            .await;
    assert!(
        matches!(&out, JobOutcome::Waiting { reason } if reason.contains("global")),
        "{out:?}"
    );
    let out =
        w.cr.handle_job(&sized_job(4, &["spotrunner/cpu=2"]), now)
            .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 9);
    assert_eq!(w.compute.live().len(), 3);
}

#[tokio::test]
async fn spot_false_launches_on_demand_under_its_own_token() {
    let w = world(sized_config(100));
    let out =
        w.cr.handle_job(
            &sized_job(5, &["spotrunner/spot=false", "spotrunner/disk=80"]),
            fixed_now(),
        )
        .await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let reqs = requests(&w);
    assert_eq!(reqs[0].capacity_type, CapacityType::OnDemand);
    assert!(
        reqs[0].client_token.ends_with("-od"),
        "{}",
        reqs[0].client_token
    );
    assert_eq!(reqs[0].size, None, "disk and spot choose no instance type");
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 1);
}

/// The request is a pure function of (job, attempt, capacity type): a retry
/// after a lost answer sends it again byte for byte (the fake compute refuses
/// a known token with other parameters) and finds the first VM.
#[tokio::test]
async fn a_sized_launch_whose_answer_was_lost_is_found_again() {
    let w = world(sized_config(100));
    w.compute
        .lose_next_answer(PortError::unavailable("ec2", "answer lost (fake)"));
    let msg = sized_job(6, &["spotrunner/cpu=4", "spotrunner/ram=16"]);
    let t0 = fixed_now();
    let out = w.cr.handle_job(&msg, t0).await;
    assert!(matches!(out, JobOutcome::Retry { .. }), "{out:?}");
    let out = w.cr.handle_job(&msg, t0 + CDuration::seconds(40)).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.compute.all().len(), 1);
    assert_eq!(w.compute.launch_calls(), 2);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 2);
}

#[tokio::test]
async fn a_size_the_pool_no_longer_allows_is_dropped_and_launches_nothing() {
    // The webhook accepted it; the bounds shrank before create-runner ran.
    let w = world(sized_config(100));
    let out =
        w.cr.handle_job(&sized_job(9, &["spotrunner/cpu=32"]), fixed_now())
            .await;
    let JobOutcome::Dropped { reason } = &out else {
        panic!("expected a drop, got {out:?}");
    };
    assert!(reason.contains("sizing.cpu = [2, 16]"), "{reason}");
    assert!(w.compute.all().is_empty());
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 0);
    assert_eq!(w.github.jit_calls(), 0);
}
