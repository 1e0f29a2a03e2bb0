//! Hot pools and steals (`crate::hot`, `create_runner/hot.rs`) on the
//! in-memory fakes.

use super::tests::{World, config, fixed_now, job, world};
use super::*;
use crate::hot::HotPools;
use crate::job::{JobStateUpdate, ObservedJobStatus};
use crate::pool_task::{PoolTask, TaskMessage};
use crate::ports::{JobQueue, JobState, JobStateSink, Ledger, RunnerChange, RunnerState};
use crate::webhook::started_elsewhere;
use chrono::{DateTime, Utc};

const HOT: &str = "hot = { count = 2, owner = \"o\" }";

fn hot_pools(w: &World) -> HotPools<'_> {
    HotPools {
        config: &w.cr.config,
        teardown: w.cr.teardown(),
        jit_parameter_prefix: &w.cr.settings.jit_parameter_prefix,
    }
}

/// Run every task on the jobs queue (and those they send) once.
async fn run_tasks(w: &World, now: DateTime<Utc>) -> Vec<JobOutcome> {
    let tasks: Vec<TaskMessage> = std::mem::take(&mut *w.jobs.tasks.lock().unwrap());
    let mut out = Vec::new();
    for t in tasks {
        out.push(w.cr.handle_task(&t, now).await);
    }
    out
}

/// Every runner the ledger holds live, as (name, job id, state).
async fn live(w: &World) -> Vec<(String, u64, RunnerState)> {
    let mut v: Vec<_> = w
        .ledger
        .list_runners()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state != RunnerState::Released)
        .map(|r| (r.name, r.job_id, r.state))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// One filler pass, its refills launched, the runners bootstrapped.
async fn fill_and_boot(w: &World, now: DateTime<Utc>) {
    hot_pools(w).step_all(now).await;
    run_tasks(w, now).await;
    boot_all(w, now).await;
}

async fn runner(w: &World, name: &str) -> crate::ports::RunnerRecord {
    w.ledger.get_runner(name).await.unwrap().unwrap()
}

async fn boot_all(w: &World, now: DateTime<Utc>) {
    for (name, _, state) in live(w).await {
        if state == RunnerState::Launched {
            let change = RunnerChange {
                state: Some(RunnerState::Bootstrapped),
                ..RunnerChange::default()
            };
            w.ledger.update_runner(&name, &change, now).await.unwrap();
        }
    }
}

/// GitHub gives `job_id` to `runner`: the webhook records it and, for a
/// runner launched for another job, sends the `started` task.
async fn github_starts(w: &World, job_id: u64, runner: &str, now: DateTime<Utc>) {
    let update = JobStateUpdate {
        job_id,
        repository: "o/r".into(),
        status: ObservedJobStatus::InProgress,
        runner_name: Some(runner.into()),
        runner_id: None,
        conclusion: None,
        at: now,
    };
    w.ledger.record_job_state(&update).await.unwrap();
    if let Some(task) = started_elsewhere("sr", &update) {
        w.jobs
            .send_task(&task, std::time::Duration::ZERO)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_hot_pool_fills_to_its_target_under_the_cap_and_a_taken_runner_is_replaced_by_the_jobs_own_launch()
 {
    let w = world(config(HOT));
    let now = fixed_now();
    let report = hot_pools(&w).step_all(now).await;
    assert_eq!(report.pools[0].refills, 2, "{report:?}");
    // Reserved before the tasks run: a second pass sends nothing more.
    assert_eq!(hot_pools(&w).step_all(now).await.pools[0].refills, 0);
    let outs = run_tasks(&w, now).await;
    assert!(
        outs.iter()
            .all(|o| matches!(o, JobOutcome::Launched { .. })),
        "{outs:?}"
    );
    boot_all(&w, now).await;
    let hot: Vec<String> = live(&w)
        .await
        .into_iter()
        .map(|(n, j, _)| {
            assert_eq!(j, 0, "hot runners have no job");
            n
        })
        .collect();
    assert_eq!(hot.len(), 2);
    assert_eq!(w.github.runners().len(), 2, "registered before any job");
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 2);

    // Job 10 is queued: GitHub gives it to a hot runner at once; its own
    // delivery launches the runner that refills the pool.
    let out = w.cr.handle_job(&job(10, "cpu"), now).await;
    let JobOutcome::Launched {
        runner_name: own, ..
    } = out
    else {
        panic!("{out:?}")
    };
    github_starts(&w, 10, &hot[0], now).await;
    run_tasks(&w, now).await;
    assert_eq!(
        runner(&w, &hot[0]).await.job_id,
        10,
        "the hot runner is bound to the job"
    );
    assert_eq!(
        runner(&w, &own).await.job_id,
        0,
        "the job's own runner joined the hot pool"
    );
    let rec = w.ledger.get_job(10).await.unwrap().unwrap();
    assert_eq!(rec.start_path.as_deref(), Some("hot"));
    assert_eq!(
        rec.state,
        JobState::Running,
        "a later launch never takes running back"
    );
    assert_eq!(
        hot_pools(&w).step_all(now).await.pools[0].refills,
        0,
        "still 2 free"
    );

    // The same task again (SQS delivers twice) changes nothing.
    github_starts(&w, 10, &hot[0], now).await;
    run_tasks(&w, now).await;
    assert_eq!(runner(&w, &own).await.job_id, 0);

    // The cap (5) holds: 3 more jobs fill it; the 4th waits in line.
    for id in 11..=14 {
        w.cr.handle_job(&job(id, "cpu"), now).await;
    }
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 5);
    assert_eq!(
        w.ledger.get_job(14).await.unwrap().unwrap().state,
        JobState::Waiting
    );
    // The pool is full: the filler cannot reserve more.
    let r = hot_pools(&w).step_all(now).await;
    assert_eq!(r.pools[0].refills, 0);
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 5);
}

#[tokio::test]
async fn a_job_that_started_on_a_hot_runner_before_its_delivery_still_refills_the_pool() {
    let w = world(config(HOT));
    let now = fixed_now();
    fill_and_boot(&w, now).await;
    let hot = live(&w).await[0].0.clone();
    // The claim made the record, GitHub started it before the launch.
    let msg = job(20, "cpu");
    w.ledger
        .claim_job(&msg, now, chrono::Duration::seconds(0))
        .await
        .unwrap();
    github_starts(&w, 20, &hot, now).await;
    run_tasks(&w, now).await;
    let out =
        w.cr.handle_job(&msg, now + chrono::Duration::seconds(1))
            .await;
    let JobOutcome::Launched { runner_name, .. } = out else {
        panic!("{out:?}")
    };
    let refill = w.ledger.get_runner(&runner_name).await.unwrap().unwrap();
    assert_eq!(refill.job_id, 0, "the delivery launched a free runner");
    assert_eq!(
        w.ledger.get_job(20).await.unwrap().unwrap().state,
        JobState::Running
    );
    // A second delivery resumes nothing new.
    let again =
        w.cr.handle_job(&msg, now + chrono::Duration::seconds(2))
            .await;
    assert_eq!(again, JobOutcome::Duplicate);
    assert_eq!(w.compute.launch_calls(), 3);
}

#[tokio::test]
async fn a_drained_hot_pool_is_emptied_and_a_busy_runner_is_kept() {
    let w = world(config(HOT));
    let now = fixed_now();
    fill_and_boot(&w, now).await;
    let hot: Vec<String> = live(&w).await.into_iter().map(|(n, ..)| n).collect();
    // One of them just got a job (GitHub says busy; the webhook is on its way).
    w.github.set_busy(&hot[1], true);
    w.ledger.set_drained("cpu", true, now).await.unwrap();
    let r = hot_pools(&w).step_all(now).await;
    assert_eq!((r.pools[0].target, r.pools[0].ended), (0, 1), "{r:?}");
    assert_eq!(live(&w).await.len(), 1, "the busy one is kept");
    assert_eq!(live(&w).await[0].0, hot[1]);
    assert_eq!(w.compute.live().len(), 1);
}

fn two_pools() -> crate::config::Config {
    crate::config::Config::from_toml(
        r#"
deployment = "sr"
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "small"
labels = ["linux"]
launch_template = "sr-small"
instance_types = ["m7i.large"]
max_runners = 5
sizing = { cpu = [2, 16] }
[[pools]]
name = "big"
labels = ["linux", "big"]
launch_template = "sr-big"
instance_types = ["m7i.4xlarge"]
max_runners = 5
"#,
    )
    .unwrap()
}

fn labelled(id: u64, pool: &str, labels: &[&str]) -> crate::job::JobMessage {
    let mut m = job(id, pool);
    m.labels = labels.iter().map(|s| s.to_string()).collect();
    m
}

#[tokio::test]
async fn a_steal_whose_thief_runner_cannot_serve_the_victim_launches_exactly_one_replacement() {
    let w = world(two_pools());
    let now = fixed_now();
    let x = labelled(30, "big", &["self-hosted", "linux", "big"]);
    let y = labelled(31, "small", &["self-hosted", "linux"]);
    let JobOutcome::Launched {
        runner_name: rx, ..
    } = w.cr.handle_job(&x, now).await
    else {
        panic!()
    };
    let JobOutcome::Launched {
        runner_name: ry, ..
    } = w.cr.handle_job(&y, now).await
    else {
        panic!()
    };
    // GitHub gives Y (linux) to X's runner (linux, big): Y's runner lacks `big`.
    github_starts(&w, 31, &rx, now).await;
    run_tasks(&w, now).await;
    github_starts(&w, 31, &rx, now).await; // delivered twice
    run_tasks(&w, now).await;
    let sent = w.jobs.sent();
    assert_eq!(sent.len(), 1, "exactly one replacement: {sent:?}");
    assert_eq!((sent[0].job_id, sent[0].launch_attempt), (30, 1));
    assert_eq!(
        w.ledger.get_job(30).await.unwrap().unwrap().state,
        JobState::Requeued
    );
    assert_eq!(w.ledger.get_runner(&rx).await.unwrap().unwrap().job_id, 31);
    let yrec = w.ledger.get_job(31).await.unwrap().unwrap();
    assert_eq!(yrec.start_path.as_deref(), Some("other"));
    // Y's own runner has nothing to do: it is not busy for the idle rule.
    let ry_rec = w.ledger.get_runner(&ry).await.unwrap().unwrap();
    assert_eq!(ry_rec.job_id, 31);
    assert_ne!(yrec.taken_by.as_deref(), Some(ry.as_str()));
    // The replacement launches X's next runner.
    let out = w.cr.handle_job(&sent[0], now).await;
    let JobOutcome::Launched { runner_name, .. } = out else {
        panic!("{out:?}")
    };
    assert!(runner_name.ends_with("-30-1"), "{runner_name}");
}

#[tokio::test]
async fn a_steal_whose_thief_runner_serves_the_victim_hands_it_over_without_a_launch() {
    let w = world(two_pools());
    let now = fixed_now();
    let a = labelled(40, "small", &["self-hosted", "linux"]);
    let b = labelled(41, "small", &["self-hosted", "linux"]);
    let JobOutcome::Launched {
        runner_name: ra, ..
    } = w.cr.handle_job(&a, now).await
    else {
        panic!()
    };
    let JobOutcome::Launched {
        runner_name: rb, ..
    } = w.cr.handle_job(&b, now).await
    else {
        panic!()
    };
    github_starts(&w, 41, &ra, now).await;
    run_tasks(&w, now).await;
    assert!(w.jobs.sent().is_empty(), "no replacement");
    assert_eq!(w.ledger.get_runner(&rb).await.unwrap().unwrap().job_id, 40);
    assert_eq!(
        w.ledger
            .get_job(40)
            .await
            .unwrap()
            .unwrap()
            .runner_name
            .as_deref(),
        Some(rb.as_str())
    );
    assert_eq!(w.compute.launch_calls(), 2);
}

#[tokio::test]
async fn a_started_task_for_a_job_not_in_the_ledger_yet_comes_back_later() {
    let w = world(config(HOT));
    let now = fixed_now();
    hot_pools(&w).step_all(now).await;
    run_tasks(&w, now).await;
    let hot = live(&w).await[0].0.clone();
    let t = TaskMessage::new(PoolTask::Started {
        job_id: 50,
        runner_name: hot.clone(),
        tries: 0,
    });
    let out = w.cr.handle_task(&t, now).await;
    assert!(matches!(out, JobOutcome::Deferred { .. }), "{out:?}");
    let again = w.jobs.tasks();
    assert!(matches!(
        again[0].pool_task,
        PoolTask::Started { tries: 1, .. }
    ));
}

#[tokio::test]
async fn a_sized_jobs_runner_taken_by_an_unsized_job_gets_the_sized_job_a_replacement() {
    let w = world(two_pools());
    let now = fixed_now();
    // Same pool; X asks for a size, so its runner registers with that label
    // and Y's runner (without it) cannot serve X.
    let x = labelled(60, "small", &["self-hosted", "linux", "spotrunner/cpu=8"]);
    let y = labelled(61, "small", &["self-hosted", "linux"]);
    let JobOutcome::Launched {
        runner_name: rx, ..
    } = w.cr.handle_job(&x, now).await
    else {
        panic!()
    };
    w.cr.handle_job(&y, now).await;
    let registered = w.github.runners();
    let labels = &registered.iter().find(|r| r.name == rx).unwrap().labels;
    assert!(labels.iter().any(|l| l == "spotrunner/cpu=8"), "{labels:?}");
    github_starts(&w, 61, &rx, now).await;
    run_tasks(&w, now).await;
    let sent = w.jobs.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].job_id, sent[0].launch_attempt), (60, 1));
}

/// The runner a steal left with nothing to do is ended by the idle rule
/// (taint, then delete after the grace); the stolen runner, busy with its
/// thief, is not touched.
#[tokio::test]
async fn the_runner_a_steal_left_idle_is_ended_by_the_idle_rule() {
    use crate::janitor::{ActionKind, Janitor, JanitorSettings};
    let w = world(two_pools());
    let now = fixed_now();
    let x = labelled(70, "big", &["self-hosted", "linux", "big"]);
    let y = labelled(71, "small", &["self-hosted", "linux"]);
    let JobOutcome::Launched {
        runner_name: rx, ..
    } = w.cr.handle_job(&x, now).await
    else {
        panic!()
    };
    let JobOutcome::Launched {
        runner_name: ry, ..
    } = w.cr.handle_job(&y, now).await
    else {
        panic!()
    };
    boot_all(&w, now).await;
    w.github.set_busy(&rx, true);
    github_starts(&w, 71, &rx, now).await;
    run_tasks(&w, now).await;
    let janitor = Janitor {
        config: w.cr.config.clone(),
        settings: JanitorSettings::for_deployment("sr"),
        ledger: w.ledger.clone(),
        github: w.github.clone(),
        compute: w.compute.clone(),
        parameters: w.params.clone(),
        jobs_queue: w.jobs.clone(),
    };
    let later = now + chrono::Duration::seconds(901);
    let report = janitor.run(later, false).await.unwrap();
    let tainted: Vec<String> = report
        .actions()
        .into_iter()
        .filter(|a| a.kind == ActionKind::Taint)
        .map(|a| a.subject)
        .collect();
    assert!(tainted.contains(&ry), "{tainted:?}");
    assert!(
        !tainted.contains(&rx),
        "the stolen runner is busy: {tainted:?}"
    );
    let report = janitor
        .run(later + chrono::Duration::minutes(11), false)
        .await
        .unwrap();
    assert!(
        report
            .actions()
            .iter()
            .any(|a| a.kind == ActionKind::DeleteTainted && a.subject == ry),
        "{:?}",
        report.actions()
    );
    let ended = w.ledger.get_runner(&ry).await.unwrap().unwrap();
    assert_eq!(ended.state, RunnerState::Released);
    assert_ne!(
        w.ledger.get_runner(&rx).await.unwrap().unwrap().state,
        RunnerState::Released
    );
}

/// A free runner older than `max_idle_secs` is replaced by a fresh one.
#[tokio::test]
async fn an_old_hot_runner_is_recycled() {
    let w = world(config(
        "hot = { count = 1, owner = \"o\", max_idle_secs = 600 }",
    ));
    let now = fixed_now();
    fill_and_boot(&w, now).await;
    let first = live(&w).await[0].0.clone();
    let r = hot_pools(&w)
        .step_all(now + chrono::Duration::seconds(300))
        .await;
    assert_eq!((r.pools[0].ended, r.pools[0].refills), (0, 0));
    let r = hot_pools(&w)
        .step_all(now + chrono::Duration::seconds(601))
        .await;
    assert_eq!((r.pools[0].ended, r.pools[0].refills), (1, 1), "{r:?}");
    let names: Vec<String> = live(&w).await.into_iter().map(|(n, ..)| n).collect();
    assert_eq!(names.len(), 1);
    assert_ne!(names[0], first, "a fresh runner");
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 1);
}

/// A refill delivered again resumes: a bootstrap that was lost is scheduled
/// again, no second VM; a copy that comes after the runner ended starts
/// nothing under its name.
#[tokio::test]
async fn a_repeated_refill_resumes_and_a_late_one_launches_nothing() {
    let w = world(config("hot = { count = 1, owner = \"o\" }"));
    let now = fixed_now();
    hot_pools(&w).step_all(now).await;
    let task = w.jobs.tasks()[0].clone();
    run_tasks(&w, now).await;
    assert_eq!(w.bootstrap.take_all().len(), 1, "bootstrap scheduled");
    // The same refill again (its first bootstrap message lost meanwhile).
    let out = w.cr.handle_task(&task, now).await;
    assert_eq!(out, JobOutcome::Duplicate);
    assert_eq!(
        w.bootstrap.take_all().len(),
        1,
        "the lost bootstrap is scheduled again"
    );
    assert_eq!(w.compute.launch_calls(), 1);
    // The runner ends; a late copy of the refill starts nothing.
    let name = live(&w).await[0].0.clone();
    w.ledger.release(&name, "test", now).await.unwrap();
    let out = w.cr.handle_task(&task, now).await;
    assert_eq!(out, JobOutcome::Duplicate);
    assert_eq!(w.compute.launch_calls(), 1);
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 0);
}

/// GitHub gave a job to a hot runner and the job completed before its
/// queued delivery made the record (both webhooks were dropped: no record
/// yet). The `started` task, back after the claim, asks GitHub and records
/// `completed`; the job's own runner joins the hot pool; a late task for an
/// ended runner still frees it.
#[tokio::test]
async fn a_job_done_on_a_hot_runner_before_its_record_is_recorded_from_github() {
    let w = world(config(HOT));
    let now = fixed_now();
    fill_and_boot(&w, now).await;
    let hot: Vec<String> = live(&w).await.into_iter().map(|(n, ..)| n).collect();
    github_starts(&w, 80, &hot[0], now).await; // dropped by the ledger: no record
    assert!(matches!(
        run_tasks(&w, now).await[0],
        JobOutcome::Deferred { .. }
    ));
    w.github.set_job(80, "completed");
    let JobOutcome::Launched {
        runner_name: own, ..
    } = w.cr.handle_job(&job(80, "cpu"), now).await
    else {
        panic!()
    };
    run_tasks(&w, now).await;
    let rec = w.ledger.get_job(80).await.unwrap().unwrap();
    assert_eq!(rec.state, JobState::Completed, "{rec:?}");
    assert_eq!(rec.start_path.as_deref(), Some("hot"));
    assert_eq!(runner(&w, &own).await.job_id, 0, "its own runner is free");

    // Job 81 on the other hot runner, which ends before the task is handled.
    let JobOutcome::Launched {
        runner_name: own81, ..
    } = w.cr.handle_job(&job(81, "cpu"), now).await
    else {
        panic!()
    };
    github_starts(&w, 81, &hot[1], now).await;
    w.ledger
        .release(&hot[1], "runner command Success", now)
        .await
        .unwrap();
    run_tasks(&w, now).await;
    assert_eq!(
        runner(&w, &own81).await.job_id,
        0,
        "freed though the thief ended"
    );
}
