//! The create-runner handler's own overhead per job (claim, reserve, JIT, launch,
//! record, schedule) with in-memory fakes of every port.
//! Run: scripts/bench.sh create_runner_job

use criterion::{Criterion, criterion_group, criterion_main};
use spotrunner_core::Config;
use spotrunner_core::create_runner::{CreateRunner, JobOutcome, Settings};
use spotrunner_core::fakes::{
    MemoryBootstrapQueue, MemoryCommands, MemoryCompute, MemoryGitHub, MemoryLedger,
    MemoryParameters, MemoryQueue,
};
use spotrunner_core::job::{JOB_MESSAGE_VERSION, JobMessage};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

fn bench(c: &mut Criterion) {
    let config = Config::from_toml(
        r#"
deployment = "sr"
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "lt"
instance_types = ["m7i.large"]
max_runners = 100000000
"#,
    )
    .unwrap();
    let cr = CreateRunner {
        settings: Settings::for_deployment("sr"),
        config: Arc::new(config),
        ledger: Arc::new(MemoryLedger::default()),
        github: Arc::new(MemoryGitHub::default()),
        compute: Arc::new(MemoryCompute::default()),
        parameters: Arc::new(MemoryParameters::default()),
        commands: Arc::new(MemoryCommands::default()),
        bootstrap_queue: Arc::new(MemoryBootstrapQueue::default()),
        jobs_queue: Arc::new(MemoryQueue::default()),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let next = AtomicU64::new(1);
    c.bench_function("create_runner/handle_job_in_memory", |b| {
        b.iter(|| {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let msg = JobMessage {
                version: JOB_MESSAGE_VERSION,
                job_id: id,
                run_id: 1,
                run_attempt: 1,
                repository: "o/r".into(),
                owner: "o".into(),
                owner_type: "Organization".into(),
                installation_id: Some(1),
                labels: vec!["linux".into()],
                pool: "cpu".into(),
                delivery_id: None,
                received_at: chrono::Utc::now(),
                queued_at: None,
                launch_attempt: 0,
                deferrals: 0,
                job_name: None,
            };
            let out = rt.block_on(cr.handle_job(&msg, chrono::Utc::now()));
            assert!(matches!(out, JobOutcome::Launched { .. }));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
