//! A hot pool on AWS (moto, the real SDK adapters, the fake GitHub over
//! HTTP): the janitor's pass reserves the missing hot runners and sends their
//! refills over SQS; create-runner launches them (EC2 tagged with job 0, JIT
//! registered with the organisation, SendCommand through the bootstrap
//! queue); a job GitHub gives to a hot runner binds it, and the runner its own
//! delivery launched joins the hot pool; the cap holds; `drain` empties it.

mod common;

use common::*;
use spotrunner_aws::sqs::SqsJobQueue;
use spotrunner_core::job::{JobStateUpdate, ObservedJobStatus};
use spotrunner_core::ports::{JobQueue, JobStateSink, Ledger, RunnerRecord, RunnerState, tags};
use spotrunner_core::webhook::started_elsewhere;

async fn live(w: &World) -> Vec<RunnerRecord> {
    w.ledger
        .list_runners()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.state != RunnerState::Released)
        .collect()
}

#[tokio::test]
async fn the_janitor_fills_the_hot_pool_and_a_job_on_a_hot_runner_is_refilled_by_its_own_launch() {
    let w = world_with(3, None, "hot = { count = 2, owner = \"octo-org\" }").await;
    let now = chrono::Utc::now();
    let report = w.janitor.step_hot(now).await;
    assert_eq!(report.pools[0].refills, 2, "{report:?}");
    // Reserved before the refills were sent: another pass adds nothing.
    assert_eq!(w.janitor.step_hot(now).await.pools[0].refills, 0);
    w.settle(2).await;

    let instances = w.instances(None).await;
    assert_eq!(instances.len(), 2, "two hot VMs");
    assert!(
        instances
            .iter()
            .all(|i| tag(i, tags::JOB_ID).as_deref() == Some("0"))
    );
    let hot = live(&w).await;
    assert_eq!(hot.len(), 2);
    assert!(
        hot.iter()
            .all(|r| r.job_id == 0 && r.state == RunnerState::Bootstrapped),
        "{hot:?}"
    );
    assert_eq!(w.github.runners().len(), 2, "registered before any job");
    assert_eq!(w.ledger.pool_use("cpu").await.unwrap().0, 2);

    // A queued job: GitHub gives it to a hot runner; its delivery launches
    // the third runner (the cap).
    w.send(&w.job(7001, "cpu").to_json()).await;
    w.settle(2).await;
    assert_eq!(w.instances(None).await.len(), 3);
    let update = JobStateUpdate {
        job_id: 7001,
        repository: "octo-org/repo".into(),
        status: ObservedJobStatus::InProgress,
        runner_name: Some(hot[0].name.clone()),
        runner_id: None,
        conclusion: None,
        at: now,
    };
    w.ledger.record_job_state(&update).await.unwrap();
    let task = started_elsewhere("sr", &update).expect("a started task");
    let sdk = spotrunner_aws::sdk::local(w._moto.url()).await;
    let queue = SqsJobQueue::new(&sdk, w.jobs_url.clone());
    queue
        .send_task(&task, std::time::Duration::ZERO)
        .await
        .unwrap();
    queue
        .send_task(&task, std::time::Duration::ZERO)
        .await
        .unwrap(); // SQS: twice
    w.settle(2).await;
    let runners = live(&w).await;
    let bound = runners.iter().find(|r| r.name == hot[0].name).unwrap();
    assert_eq!(bound.job_id, 7001);
    let free = runners.iter().filter(|r| r.job_id == 0).count();
    assert_eq!(
        free, 2,
        "the job's own runner joined the hot pool: {runners:?}"
    );
    let job = w.ledger.get_job(7001).await.unwrap().unwrap();
    assert_eq!(job.start_path.as_deref(), Some("hot"));
    assert_eq!(w.janitor.step_hot(now).await.pools[0].refills, 0);
    assert_eq!(
        w.ledger.pool_use("cpu").await.unwrap().0,
        3,
        "the cap holds"
    );

    // Drain: the idle hot runners end; the busy one is kept.
    w.github.set_runner_status(&hot[0].name, "online", true);
    w.ledger.set_drained("cpu", true, now).await.unwrap();
    let r = w.janitor.step_hot(now).await;
    assert_eq!((r.pools[0].target, r.pools[0].ended), (0, 2), "{r:?}");
    let left = live(&w).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].name, hot[0].name);
    assert_eq!(w.instances(Some("running")).await.len(), 1);
}
