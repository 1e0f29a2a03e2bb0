use super::*;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::fakes::{
    MemoryBootstrapQueue, MemoryCommands, MemoryCompute, MemoryGitHub, MemoryLedger,
    MemoryParameters, MemoryQueue,
};
use crate::job::{JOB_MESSAGE_VERSION, JobMessage};
use crate::ports::{JobState, Ledger, PortError, RunnerState, Stage, tags};
use crate::target::github_target;
use chrono::{DateTime, Duration as CDuration, Utc};
use std::sync::Arc;
use std::time::Duration;

pub(super) struct World {
    pub(super) ledger: Arc<MemoryLedger>,
    pub(super) github: Arc<MemoryGitHub>,
    pub(super) compute: Arc<MemoryCompute>,
    pub(super) params: Arc<MemoryParameters>,
    pub(super) commands: Arc<MemoryCommands>,
    pub(super) bootstrap: Arc<MemoryBootstrapQueue>,
    pub(super) jobs: Arc<MemoryQueue>,
    pub(super) cr: CreateRunner,
}

pub(super) fn config(extra: &str) -> Config {
    Config::from_toml(&format!(
        r#"
deployment = "sr"
max_total_weight = 100
[github]
auth = {{ type = "pat", token = "env:T" }}
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "sr-cpu"
instance_types = ["m7i.large", "m6i.large"]
subnets = ["subnet-1"]
max_runners = 5
{extra}
[[pools]]
name = "gpu"
labels = ["gpu"]
launch_template = "sr-gpu"
instance_types = ["g5.xlarge"]
max_runners = 50
weight = 4
startup_script = "nvidia-smi"
"#
    ))
    .unwrap()
}

/// The one clock of these tests (`crate::clock`): jobs are created, queued and
/// received at this instant and every step runs at it or at an offset from it,
/// never at the machine's date, so the 24 h queue limit, leases and boot
/// timeouts measure the test's own time and the suite passes in any year.
pub(super) fn fixed_now() -> DateTime<Utc> {
    "2026-11-26T10:00:00Z".parse().unwrap()
}

pub(super) fn world(config: Config) -> World {
    let ledger = Arc::new(MemoryLedger::default());
    let github = Arc::new(MemoryGitHub::default());
    let compute = Arc::new(MemoryCompute::with_clock(Arc::new(ManualClock::new(
        fixed_now(),
    ))));
    let params = Arc::new(MemoryParameters::default());
    let commands = Arc::new(MemoryCommands::default());
    let bootstrap = Arc::new(MemoryBootstrapQueue::default());
    let jobs = Arc::new(MemoryQueue::default());
    let settings = Settings::for_deployment(&config.deployment);
    let cr = CreateRunner {
        config: Arc::new(config),
        settings,
        ledger: ledger.clone(),
        github: github.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        commands: commands.clone(),
        bootstrap_queue: bootstrap.clone(),
        jobs_queue: jobs.clone(),
    };
    World {
        ledger,
        github,
        compute,
        params,
        commands,
        bootstrap,
        jobs,
        cr,
    }
}

pub(super) fn job(id: u64, pool: &str) -> JobMessage {
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: id,
        run_id: 1,
        run_attempt: 1,
        repository: "o/r".into(),
        owner: "o".into(),
        owner_type: "Organization".into(),
        installation_id: Some(1),
        labels: vec![
            "self-hosted".into(),
            if pool == "gpu" { "gpu" } else { "linux" }.into(),
        ],
        pool: pool.into(),
        delivery_id: None,
        received_at: fixed_now(),
        queued_at: Some(fixed_now()),
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

#[tokio::test]
async fn one_job_one_vm_with_its_parameter_tags_and_bootstrap() {
    let w = world(config(""));
    let out = w.cr.handle_job(&job(7, "gpu"), fixed_now()).await;
    let JobOutcome::Launched {
        runner_name,
        instance_id,
    } = out
    else {
        panic!("expected a launch, got {out:?}");
    };
    assert_eq!(runner_name, "sr_gpu-7-0");
    let live = w.compute.live();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].tag(tags::JOB_ID), Some("7"));
    assert_eq!(live[0].tag(tags::POOL), Some("gpu"));
    assert_eq!(live[0].tag(tags::RUNNER_NAME), Some("sr_gpu-7-0"));
    assert_eq!(live[0].tag(tags::DEPLOYMENT), Some("sr"));
    let param = "/sr/jit/sr_gpu-7-0";
    assert_eq!(w.params.value(param).as_deref(), Some("JIT-SECRET-1"));
    assert!(
        w.params
            .tags(param)
            .contains(&("spotrunner:instance-id".into(), instance_id.clone()))
    );
    let runner = w.ledger.get_runner("sr_gpu-7-0").await.unwrap().unwrap();
    assert_eq!(runner.state, RunnerState::Launched);
    assert_eq!(runner.instance_id.as_deref(), Some(instance_id.as_str()));
    assert_eq!(runner.github_runner_id, Some(1));
    let rec = w.ledger.get_job(7).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Launched);
    assert_eq!(w.github.runners()[0].labels, vec!["self-hosted", "gpu"]);

    let scheduled = w.bootstrap.take_all();
    assert_eq!(scheduled.len(), 1);
    let out = w.cr.handle_bootstrap(&scheduled[0].0, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let sent = w.commands.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].jit_parameter, param);
    assert_eq!(
        sent[0].startup_script_key.as_deref(),
        Some("startup/gpu.sh")
    );
    assert!(!format!("{:?}", sent[0]).contains("JIT-SECRET"));
    let runner = w.ledger.get_runner("sr_gpu-7-0").await.unwrap().unwrap();
    assert_eq!(runner.state, RunnerState::Bootstrapped);
    assert_eq!(runner.command_id.as_deref(), Some("cmd-1"));
    // The same bootstrap message again changes nothing.
    let again = w.cr.handle_bootstrap(&scheduled[0].0, fixed_now()).await;
    assert_eq!(again, JobOutcome::Duplicate);
    assert_eq!(w.commands.sent().len(), 1);
}

#[tokio::test]
async fn each_message_three_times_in_eight_concurrent_batches_gives_one_vm_per_job() {
    let cfg = config("")
        .to_json()
        .replace("\"max_runners\": 5", "\"max_runners\": 100");
    let w = world(Config::from_json(&cfg).unwrap());
    let mut batches: Vec<Vec<(String, String)>> = vec![Vec::new(); 8];
    let mut n = 0;
    for round in 0..3 {
        for id in 0..40u64 {
            let pool = if id.is_multiple_of(2) { "cpu" } else { "gpu" };
            batches[n % 8].push((format!("m-{round}-{id}"), job(id, pool).to_json()));
            n += 1;
        }
    }
    // Deliver until nothing is left to retry, as SQS would.
    let mut pending = batches;
    for _ in 0..10 {
        let results = futures::future::join_all(
            pending
                .iter()
                .map(|b| w.cr.handle_batch(b.clone(), fixed_now())),
        )
        .await;
        let retry: Vec<String> = results
            .iter()
            .flat_map(|r| r.failures().into_iter().map(|i| i.message_id.clone()))
            .collect();
        // Expire leases held by nobody: retried claims resume at once.
        pending = vec![
            pending
                .concat()
                .into_iter()
                .filter(|(id, _)| retry.contains(id))
                .collect(),
        ];
        if pending[0].is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let live = w.compute.live();
    assert_eq!(live.len(), 40, "exactly one VM per job");
    let mut ids: Vec<&str> = live.iter().map(|i| i.tag(tags::JOB_ID).unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(w.github.jit_calls(), 40, "one JIT call per job");
    assert_eq!(w.params.names().len(), 40);
}

/// A job queued `secs` after the fixed start (GitHub's order).
fn queued_job(id: u64, pool: &str, secs: i64) -> JobMessage {
    let mut m = job(id, pool);
    m.queued_at = Some(fixed_now() + CDuration::seconds(secs));
    m
}

/// End every live runner of the fake cloud through the teardown stop-runner
/// and the janitor use (which wakes the waiting line); their names.
async fn end_all(w: &World) -> Vec<String> {
    let mut ended = Vec::new();
    for inst in w.compute.live() {
        let name = inst.tag(tags::RUNNER_NAME).unwrap().to_string();
        let runner = w.ledger.get_runner(&name).await.unwrap().unwrap();
        assert!(
            w.cr.teardown()
                .end_runner(&runner, true, "done", fixed_now())
                .await
                .unwrap()
        );
        ended.push(name);
    }
    ended
}

#[tokio::test]
async fn a_full_pool_lines_jobs_up_and_each_freed_slot_launches_the_oldest() {
    let w = world(config(""));
    // 20 jobs delivered newest first: GitHub's order is the reverse.
    let mut launched = Vec::new();
    for i in (0..20u64).rev() {
        match w
            .cr
            .handle_job(&queued_job(i, "cpu", i as i64), fixed_now())
            .await
        {
            JobOutcome::Launched { .. } => launched.push(i),
            JobOutcome::Waiting { reason } => assert!(reason.contains("max_runners"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        launched,
        vec![19, 18, 17, 16, 15],
        "the first five to arrive"
    );
    assert!(
        w.jobs.sent().is_empty(),
        "waiting jobs are not re-sent on a timer"
    );
    let line = w.ledger.waiting_line("cpu").await.unwrap();
    let order: Vec<u64> = line.waiters.iter().map(|w| w.job_id).collect();
    assert_eq!(
        order,
        (0..15).collect::<Vec<_>>(),
        "the line is in GitHub's order"
    );
    assert_eq!(
        w.ledger.get_job(0).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    let mut rounds = 0;
    while !w.ledger.waiting_line("cpu").await.unwrap().is_empty() {
        rounds += 1;
        assert!(rounds <= 3, "15 waiting jobs through 5 slots take 3 rounds");
        end_all(&w).await;
        // Each freed slot woke exactly one waiting job, oldest first.
        let woken = std::mem::take(&mut *w.jobs.sent.lock().unwrap());
        assert_eq!(woken.len(), 5);
        for m in woken {
            let out = w.cr.handle_job(&m, fixed_now()).await;
            assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
            launched.push(m.job_id);
            assert!(w.compute.live().len() <= 5, "never more than max_runners");
        }
    }
    assert_eq!(
        launched[5..],
        (0..15).collect::<Vec<_>>(),
        "FIFO after the first five"
    );
    assert_eq!(w.compute.all().len(), 20, "one VM per job");
    let job = w.ledger.get_job(3).await.unwrap().unwrap();
    for stage in [
        Stage::Created,
        Stage::Received,
        Stage::Claimed,
        Stage::WaitingSince,
        Stage::WaitingUntil,
        Stage::JitRegistered,
        Stage::LaunchRequested,
    ] {
        assert!(
            job.timeline.get(stage).is_some(),
            "{stage:?} stamped: {:?}",
            job.timeline
        );
    }
    assert!(
        job.timeline
            .millis(Stage::WaitingSince, Stage::WaitingUntil)
            .is_some()
    );
}

#[tokio::test]
async fn concurrent_releases_and_duplicate_wakes_launch_each_waiting_job_once() {
    let w = world(config(""));
    for i in 0..12u64 {
        w.cr.handle_job(&queued_job(i, "cpu", i as i64), fixed_now())
            .await;
    }
    assert_eq!(w.compute.live().len(), 5);
    for _ in 0..3 {
        // Five runners end at once (five stop-runner invocations racing).
        let runners: Vec<_> = futures::future::join_all(w.compute.live().into_iter().map(|inst| {
            let ledger = w.ledger.clone();
            async move {
                let name = inst.tag(tags::RUNNER_NAME).unwrap().to_string();
                ledger.get_runner(&name).await.unwrap().unwrap()
            }
        }))
        .await;
        let teardown = w.cr.teardown();
        futures::future::join_all(
            runners
                .iter()
                .map(|r| teardown.end_runner(r, true, "done", fixed_now())),
        )
        .await;
        // Every wake delivered twice (SQS), handled concurrently.
        let woken = std::mem::take(&mut *w.jobs.sent.lock().unwrap());
        let twice: Vec<_> = woken.iter().chain(woken.iter()).cloned().collect();
        futures::future::join_all(twice.iter().map(|m| w.cr.handle_job(m, fixed_now()))).await;
        assert!(w.compute.live().len() <= 5, "the cap holds");
    }
    let all = w.compute.all();
    assert_eq!(all.len(), 12, "each job launched exactly once");
    let mut ids: Vec<String> = all
        .iter()
        .map(|(i, _)| i.tag(tags::JOB_ID).unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12);
    assert!(w.ledger.waiting_line("cpu").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_slot_freed_before_a_job_enters_the_line_is_not_lost() {
    let w = world(config(""));
    for i in 0..5u64 {
        w.cr.handle_job(&queued_job(i, "cpu", i as i64), fixed_now())
            .await;
    }
    // Job 9 is claimed and refused a slot; before it enters the line, every
    // runner ends: their releases find the line empty and wake nobody.
    let lease = chrono::Duration::minutes(5);
    let claimed = w
        .ledger
        .claim_job(&queued_job(9, "cpu", 9), fixed_now(), lease)
        .await;
    assert!(matches!(
        claimed,
        Ok(crate::ports::ClaimOutcome::Claimed(_))
    ));
    assert_eq!(end_all(&w).await.len(), 5);
    assert!(w.jobs.sent().is_empty(), "nobody was waiting");
    // Then it enters the line and looks for a slot itself (as `wait` does).
    let pool = w.cr.config.pool("cpu").unwrap().clone();
    assert_eq!(
        w.ledger.enter_line("cpu", 9, 0, fixed_now()).await.unwrap(),
        crate::ports::LineOutcome::Entered
    );
    let woken =
        w.cr.teardown()
            .waker()
            .wake(&pool.name, fixed_now())
            .await
            .unwrap();
    assert_eq!(woken, vec![9]);
    let out = w.cr.handle_job(&w.jobs.sent()[0], fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
}

#[tokio::test]
async fn global_weighted_quota_holds_with_mixed_weights() {
    let cfg = config("")
        .to_json()
        .replace("\"max_total_weight\": 100", "\"max_total_weight\": 10");
    let w = world(Config::from_json(&cfg).unwrap());
    // gpu weighs 4, cpu 1: 2 gpu (8) + 2 cpu (2) = 10.
    let mut launched_weight = 0;
    for (i, pool) in ["gpu", "gpu", "gpu", "cpu", "cpu", "cpu"]
        .iter()
        .enumerate()
    {
        if let JobOutcome::Launched { .. } =
            w.cr.handle_job(&job(i as u64, pool), fixed_now()).await
        {
            launched_weight += if *pool == "gpu" { 4 } else { 1 };
        }
    }
    assert_eq!(launched_weight, 10);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 10);
    assert_eq!(w.compute.live().len(), 4);
}

#[tokio::test]
async fn no_spot_capacity_falls_back_to_on_demand_when_allowed() {
    let w = world(config("on_demand_fallback = true"));
    w.compute.set_no_spot_capacity(true);
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    let all = w.compute.all();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1, crate::config::CapacityType::OnDemand);
}

#[tokio::test]
async fn no_spot_capacity_without_fallback_defers_and_leaves_nothing_behind() {
    let w = world(config(""));
    w.compute.set_no_spot_capacity(true);
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    assert!(w.compute.all().is_empty());
    assert!(w.params.names().is_empty(), "parameter deleted");
    assert!(w.github.runners().is_empty(), "registration deleted");
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
    assert_eq!(w.jobs.sent().len(), 1, "job re-sent for later");
    // Capacity comes back: the re-sent message is served.
    w.compute.set_no_spot_capacity(false);
    let next = w.jobs.sent()[0].clone();
    let out = w.cr.handle_job(&next, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
}

#[tokio::test]
async fn a_transient_launch_error_is_retried_without_a_second_vm() {
    let w = world(config(""));
    w.compute
        .state
        .lock()
        .unwrap()
        .fail_next_launch
        .push_back(PortError::Throttled {
            service: "ec2",
            retry_after: Duration::from_secs(2),
        });
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(
        matches!(out, JobOutcome::Retry { after, .. } if after == Duration::from_secs(2)),
        "{out:?}"
    );
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    assert_eq!(w.compute.all().len(), 1);
    assert_eq!(
        w.github.jit_calls(),
        1,
        "JIT config reused from the parameter"
    );
}

#[tokio::test]
async fn github_refusing_launches_nothing_and_releases_capacity() {
    let w = world(config(""));
    w.github.fail_next_jit(PortError::Throttled {
        service: "github",
        retry_after: Duration::from_secs(60),
    });
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(
        matches!(out, JobOutcome::Retry { after, .. } if after == Duration::from_secs(60)),
        "{out:?}"
    );
    assert_eq!(w.compute.launch_calls(), 0, "no VM while GitHub refuses");
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

#[tokio::test]
async fn one_malformed_message_fails_alone() {
    let w = world(config(""));
    let mut batch: Vec<(String, String)> = (0..9)
        .map(|i| (format!("m{i}"), job(i, "gpu").to_json()))
        .collect();
    batch.insert(4, ("bad".into(), "{\"version\":1,\"job_id\":\"x\"}".into()));
    let result = w.cr.handle_batch(batch, fixed_now()).await;
    let failures: Vec<&str> = result
        .failures()
        .iter()
        .map(|i| i.message_id.as_str())
        .collect();
    assert_eq!(failures, vec!["bad"]);
    assert_eq!(w.compute.live().len(), 9);
}

#[tokio::test]
async fn jobs_past_githubs_24h_limit_are_dropped() {
    let w = world(config(""));
    let mut m = job(1, "cpu");
    m.queued_at = Some(fixed_now() - CDuration::hours(25));
    let out = w.cr.handle_job(&m, fixed_now()).await;
    assert!(matches!(out, JobOutcome::Dropped { .. }), "{out:?}");
    assert!(w.compute.all().is_empty());
}

#[tokio::test]
async fn job_no_longer_queued_on_github_is_dropped_when_the_pool_asks() {
    let w = world(config("check_job_queued = true"));
    w.github.set_job(1, "completed");
    w.github.set_job(2, "queued");
    let out = w.cr.handle_job(&job(1, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Dropped { .. }), "{out:?}");
    assert_eq!(
        w.ledger.get_job(1).await.unwrap().unwrap().state,
        JobState::Dropped
    );
    let out = w.cr.handle_job(&job(2, "cpu"), fixed_now()).await;
    assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
}

#[tokio::test]
async fn boot_timeout_terminates_and_requeues_with_the_next_attempt() {
    let w = world(config(""));
    let t0 = fixed_now();
    w.cr.handle_job(&job(3, "cpu"), t0).await;
    w.commands.set_not_ready(true);
    let (msg, _) = w.bootstrap.take_all().remove(0);
    let out =
        w.cr.handle_bootstrap(&msg, t0 + CDuration::seconds(10))
            .await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    let (retry_msg, delay) = w.bootstrap.take_all().remove(0);
    assert_eq!(retry_msg.tries, 1);
    assert!(delay <= Duration::from_secs(30));
    let out =
        w.cr.handle_bootstrap(&retry_msg, t0 + CDuration::seconds(301))
            .await;
    assert!(matches!(out, JobOutcome::Dropped { .. }), "{out:?}");
    assert!(w.compute.live().is_empty(), "instance terminated");
    assert!(w.params.names().is_empty(), "parameter deleted");
    assert!(w.github.runners().is_empty(), "registration deleted");
    let runner = w.ledger.get_runner("sr_cpu-3-0").await.unwrap().unwrap();
    assert_eq!(runner.state, RunnerState::Released);
    let requeued = w.jobs.sent();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].launch_attempt, 1);
    // The requeued job launches a fresh runner with the next attempt's name.
    w.commands.set_not_ready(false);
    let out = w.cr.handle_job(&requeued[0], fixed_now()).await;
    assert!(
        matches!(&out, JobOutcome::Launched { runner_name, .. } if runner_name == "sr_cpu-3-1"),
        "{out:?}"
    );
    assert_eq!(w.compute.live().len(), 1);
}

#[tokio::test]
async fn a_drained_pool_holds_its_line_and_undrain_wakes_it_in_order() {
    let w = world(config(""));
    w.ledger
        .set_drained("cpu", true, fixed_now())
        .await
        .unwrap();
    for i in [12u64, 11] {
        let out =
            w.cr.handle_job(&queued_job(i, "cpu", i as i64), fixed_now())
                .await;
        assert!(
            matches!(&out, JobOutcome::Waiting { reason } if reason.contains("drained")),
            "{out:?}"
        );
        assert!(!out.keeps_message(), "acknowledged: the line keeps it");
    }
    assert!(w.compute.live().is_empty());
    assert!(w.jobs.sent().is_empty(), "no copies on a timer");
    // A release while drained wakes nobody.
    assert!(
        w.cr.teardown()
            .waker()
            .wake("cpu", fixed_now())
            .await
            .unwrap()
            .is_empty()
    );
    // Other pools are not affected.
    let gpu = w.cr.handle_job(&job(20, "gpu"), fixed_now()).await;
    assert!(matches!(gpu, JobOutcome::Launched { .. }), "{gpu:?}");
    // Undrained (as `spotrunner undrain` does: flag, then wake), oldest first.
    w.ledger
        .set_drained("cpu", false, fixed_now())
        .await
        .unwrap();
    assert_eq!(
        w.cr.teardown().waker().wake_all(fixed_now()).await,
        vec![11, 12]
    );
    for m in w.jobs.sent() {
        let out = w.cr.handle_job(&m, fixed_now()).await;
        assert!(matches!(out, JobOutcome::Launched { .. }), "{out:?}");
    }
    assert_eq!(w.compute.live().len(), 3);
}

/// Issue 10, defect 1: CreateFleet applied but its answer was lost; the retry
/// (a later delivery, a later `now`) must send the very same request under the
/// same ClientToken, find the first VM and undo nothing.
#[tokio::test]
async fn a_launch_whose_answer_was_lost_is_found_again_by_a_later_retry() {
    let w = world(config(""));
    w.compute.lose_next_answer(PortError::unavailable(
        "ec2",
        "connection reset after CreateFleet was sent (fake)",
    ));
    let t0 = fixed_now();
    let out = w.cr.handle_job(&job(5, "cpu"), t0).await;
    assert!(matches!(out, JobOutcome::Retry { .. }), "{out:?}");
    assert_eq!(w.compute.live().len(), 1, "the first call did start a VM");

    let out =
        w.cr.handle_job(&job(5, "cpu"), t0 + CDuration::seconds(47))
            .await;
    let JobOutcome::Launched { instance_id, .. } = &out else {
        panic!("expected the first VM, got {out:?}");
    };
    let all = w.compute.all();
    assert_eq!(all.len(), 1, "exactly one instance ever");
    assert_eq!(&all[0].0.instance_id, instance_id);
    assert!(all[0].0.is_live(), "not terminated");
    assert_eq!(w.compute.launch_calls(), 2);
    let runner = w.ledger.get_runner("sr_cpu-5-0").await.unwrap().unwrap();
    assert_eq!(runner.state, RunnerState::Launched);
    assert_eq!(runner.instance_id.as_deref(), Some(instance_id.as_str()));
    // Nothing undone: registration, parameter and capacity kept.
    assert_eq!(w.github.runners().len(), 1);
    assert_eq!(w.github.jit_calls(), 1);
    assert_eq!(w.params.names(), vec!["/sr/jit/sr_cpu-5-0".to_string()]);
    assert_eq!(w.ledger.capacity().await.unwrap().pools["cpu"], 1);
    assert_eq!(
        w.ledger.get_job(5).await.unwrap().unwrap().state,
        JobState::Launched
    );
    assert_eq!(w.bootstrap.take_all().len(), 1);
}

#[test]
fn a_users_repository_gets_repository_runners_even_from_an_org_pool() {
    use crate::ports::RunnerScope;
    let config = config("");
    let pool = config.pool("cpu").unwrap();
    let org_job = job(1, "cpu");
    assert_eq!(
        github_target(&org_job, pool).scope,
        RunnerScope::Org { org: "o".into() }
    );
    let user_job = JobMessage {
        owner_type: "User".into(),
        ..job(2, "cpu")
    };
    assert_eq!(
        github_target(&user_job, pool).scope,
        RunnerScope::Repo {
            owner: "o".into(),
            repo: "r".into()
        }
    );
    let mut repo_pool = pool.clone();
    repo_pool.scope = crate::config::Scope::Repo;
    assert_eq!(
        github_target(&org_job, &repo_pool).scope,
        RunnerScope::Repo {
            owner: "o".into(),
            repo: "r".into()
        }
    );
}
