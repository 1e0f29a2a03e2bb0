//! A Graviton pool end to end through create-runner: its own launch template
//! (whose AMI is arm64, terraform/ec2.tf), its arm64 instance types, and the
//! arm64 runner tarball in the bootstrap command.

use super::JobOutcome;
use super::tests::{config, fixed_now, job, world};
use crate::config::Architecture;

const ARM_POOL: &str = r#"
[[pools]]
name = "arm"
labels = ["linux", "arm64"]
launch_template = "sr-arm"
instance_types = ["m7g.large", "c7g.large"]
max_runners = 5
"#;

#[tokio::test]
async fn a_graviton_pool_launches_its_template_and_types_and_boots_the_arm64_runner() {
    let w = world(config(ARM_POOL));
    let mut msg = job(11, "arm");
    msg.labels = vec!["self-hosted".into(), "linux".into(), "arm64".into()];
    let out = w.cr.handle_job(&msg, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");

    let requests: Vec<_> = w
        .compute
        .state
        .lock()
        .unwrap()
        .tokens
        .values()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].pool, "arm");
    assert_eq!(requests[0].launch_template, "sr-arm");
    assert_eq!(requests[0].instance_types, vec!["m7g.large", "c7g.large"]);

    let (boot, _) = w.bootstrap.take_all().remove(0);
    let out = w.cr.handle_bootstrap(&boot, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let sent = w.commands.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].runner_arch, Architecture::Arm64);
}

#[tokio::test]
async fn an_x64_pool_boots_the_x64_runner() {
    let w = world(config(""));
    let out = w.cr.handle_job(&job(12, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let (boot, _) = w.bootstrap.take_all().remove(0);
    w.cr.handle_bootstrap(&boot, fixed_now()).await;
    let sent = w.commands.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].runner_arch, Architecture::X64);
}
