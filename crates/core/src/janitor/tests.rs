use super::*;
use crate::config::Config;
use crate::fakes::{
    Hook, MemoryCompute, MemoryGitHub, MemoryLedger, MemoryParameters, MemoryQueue, RacingLedger,
};
use crate::job::{JOB_MESSAGE_VERSION, JobMessage};
use crate::ports::{
    CapacityUse, GitHubApi, GitHubRunner, Instance, JobRecord, JobState, Ledger, Limits,
    ReserveOutcome, RunnerChange, RunnerParameters, RunnerRecord, RunnerState, tags,
};
use chrono::{Duration, Utc};

struct World {
    ledger: Arc<MemoryLedger>,
    github: Arc<MemoryGitHub>,
    compute: Arc<MemoryCompute>,
    params: Arc<MemoryParameters>,
    jobs: Arc<MemoryQueue>,
    janitor: Janitor,
    now: DateTime<Utc>,
}

fn world() -> World {
    let config = Config::from_toml(
        r#"
deployment = "sr"
allowed_owners = ["o"]
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "cpu"
labels = ["linux"]
launch_template = "sr-cpu"
instance_types = ["m7i.large"]
max_runners = 50
boot_timeout_secs = 300
idle_timeout_secs = 900
max_run_time_secs = 3600
"#,
    )
    .unwrap();
    let ledger = Arc::new(MemoryLedger::default());
    let github = Arc::new(MemoryGitHub::default());
    let compute = Arc::new(MemoryCompute::default());
    let params = Arc::new(MemoryParameters::default());
    let jobs = Arc::new(MemoryQueue::default());
    let janitor = Janitor {
        settings: JanitorSettings::for_deployment("sr"),
        config: Arc::new(config),
        ledger: ledger.clone(),
        github: github.clone(),
        compute: compute.clone(),
        parameters: params.clone(),
        jobs_queue: jobs.clone(),
    };
    World {
        ledger,
        github,
        compute,
        params,
        jobs,
        janitor,
        now: Utc::now(),
    }
}

fn message(job_id: u64, queued_ago: Duration, now: DateTime<Utc>) -> JobMessage {
    JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id,
        run_id: 1,
        run_attempt: 1,
        repository: "o/r".into(),
        owner: "o".into(),
        owner_type: "Organization".into(),
        installation_id: Some(1),
        labels: vec!["linux".into()],
        pool: "cpu".into(),
        delivery_id: None,
        received_at: now - queued_ago,
        queued_at: Some(now - queued_ago),
        launch_attempt: 0,
        deferrals: 0,
        job_name: None,
    }
}

fn name(job_id: u64) -> String {
    format!("sr_cpu-{job_id}-0")
}

/// How a runner stands in the world a test builds.
struct R {
    job: u64,
    state: RunnerState,
    /// Seconds since launch; `None`: no instance.
    age: Option<i64>,
    /// GitHub registration: (status, busy).
    github: Option<(&'static str, bool)>,
    job_state: JobState,
}

impl R {
    fn new(job: u64, state: RunnerState, age: Option<i64>) -> Self {
        Self {
            job,
            state,
            age,
            github: None,
            job_state: JobState::Launched,
        }
    }
    fn github(mut self, status: &'static str, busy: bool) -> Self {
        self.github = Some((status, busy));
        self
    }
    fn job_state(mut self, s: JobState) -> Self {
        self.job_state = s;
        self
    }
}

impl World {
    fn job(&self, id: u64, state: JobState, runner: Option<String>, updated_ago: Duration) {
        let msg = message(id, updated_ago, self.now);
        self.ledger.put_job(JobRecord {
            job_id: id,
            pool: "cpu".into(),
            repository: "o/r".into(),
            state,
            launch_attempt: 0,
            runner_name: runner.clone(),
            taken_by: (state == JobState::Running).then_some(runner).flatten(),
            lease_until: None,
            message: msg,
            created_at: self.now - updated_ago,
            updated_at: self.now - updated_ago,
            end_reason: None,
            timeline: Default::default(),
            conclusion: None,
            rerun: None,
            start_path: None,
        });
    }

    fn instance(&self, id: &str, runner: &str, job: u64, age: i64) {
        let launched = self.now - Duration::seconds(age);
        let mut s = self.compute.state.lock().unwrap();
        s.instances.insert(
            id.into(),
            (
                Instance {
                    instance_id: id.into(),
                    state: "running".into(),
                    launched_at: Some(launched),
                    tags: vec![
                        (tags::DEPLOYMENT.into(), "sr".into()),
                        (tags::POOL.into(), "cpu".into()),
                        (tags::RUNNER_NAME.into(), runner.into()),
                        (tags::JOB_ID.into(), job.to_string()),
                    ],
                },
                crate::config::CapacityType::Spot,
            ),
        );
    }

    fn github_runner(&self, runner: &str, status: &str, busy: bool) -> u64 {
        let mut s = self.github.state.lock().unwrap();
        s.next_id += 1;
        let id = s.next_id;
        s.names.insert(runner.into(), id);
        s.runners.insert(
            id,
            GitHubRunner {
                id,
                name: runner.into(),
                status: status.into(),
                busy,
                labels: vec![],
            },
        );
        id
    }

    async fn param(&self, runner: &str) {
        self.params
            .put(&format!("/sr/jit/{runner}"), "JIT", &[])
            .await
            .unwrap();
    }

    /// A runner with its job, instance, parameter and GitHub registration.
    async fn runner(&self, r: R) -> String {
        let n = name(r.job);
        let instance = r.age.map(|_| format!("i-{:04}", r.job));
        let launched = r.age.map(|a| self.now - Duration::seconds(a));
        let github_id = r.github.map(|(s, b)| self.github_runner(&n, s, b));
        self.ledger.put_runner(RunnerRecord {
            name: n.clone(),
            pool: "cpu".into(),
            job_id: r.job,
            weight: 1,
            state: r.state,
            instance_id: instance.clone(),
            command_id: None,
            github_runner_id: github_id,
            jit_parameter: format!("/sr/jit/{n}"),
            created_at: launched.unwrap_or(self.now - Duration::seconds(60)),
            launched_at: launched,
            updated_at: launched.unwrap_or(self.now),
            end_reason: None,
        });
        self.job(r.job, r.job_state, Some(n.clone()), Duration::minutes(1));
        if let (Some(i), Some(age)) = (&instance, r.age) {
            self.instance(i, &n, r.job, age);
        }
        self.param(&n).await;
        n
    }

    /// Counters that match the live runners.
    async fn sync_capacity(&self) {
        let runners = self.ledger.list_runners().await.unwrap();
        let mut c = CapacityUse::default();
        for r in runners.iter().filter(|r| r.state != RunnerState::Released) {
            *c.pools.entry(r.pool.clone()).or_default() += 1;
            c.weight += r.weight;
        }
        self.ledger.set_capacity(&c).await.unwrap();
    }

    async fn pass(&self, dry_run: bool) -> JanitorReport {
        self.janitor.run(self.now, dry_run).await.unwrap()
    }

    fn live(&self, id: &str) -> bool {
        self.compute.live().iter().any(|i| i.instance_id == id)
    }

    async fn runner_state(&self, n: &str) -> RunnerState {
        self.ledger.get_runner(n).await.unwrap().unwrap().state
    }

    async fn job_state(&self, id: u64) -> JobState {
        self.ledger.get_job(id).await.unwrap().unwrap().state
    }
}

fn kinds(report: &JanitorReport) -> Vec<(ActionKind, String)> {
    let mut v: Vec<_> = report
        .results
        .iter()
        .map(|r| (r.action.kind, r.action.subject.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn never_bootstrapped_past_boot_timeout_is_ended_and_its_job_requeued() {
    let w = world();
    let n = w.runner(R::new(1, RunnerState::Launched, Some(301))).await;
    let young = w.runner(R::new(2, RunnerState::Launched, Some(200))).await;
    w.sync_capacity().await;
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::BootTimeout, n.clone())]);
    assert!(report.results[0].done);
    assert!(!w.live("i-0001"));
    assert_eq!(w.runner_state(&n).await, RunnerState::Released);
    assert_eq!(w.job_state(1).await, JobState::Requeued);
    let sent = w.jobs.sent();
    assert_eq!(
        (sent.len(), sent[0].job_id, sent[0].launch_attempt),
        (1, 1, 1)
    );
    assert!(!w.params.names().contains(&format!("/sr/jit/{n}")));
    assert_eq!(w.runner_state(&young).await, RunnerState::Launched);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 1);
}

#[tokio::test]
async fn past_max_run_time_is_terminated() {
    let w = world();
    let n = w
        .runner(
            R::new(1, RunnerState::Bootstrapped, Some(3601))
                .github("online", true)
                .job_state(JobState::Running),
        )
        .await;
    w.sync_capacity().await;
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::MaxRunTime, n.clone())]);
    assert!(!w.live("i-0001"));
    // GitHub refuses to delete a runner while it is busy (422): the runner
    // stays on the ledger until GitHub sees it go…
    assert_eq!(w.runner_state(&n).await, RunnerState::Bootstrapped);
    assert_eq!(w.github.runners().len(), 1);
    // …offline; then the next pass releases it (`release_lost`).
    w.github.set_busy(&n, false);
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::ReleaseLost, n.clone())]);
    assert_eq!(w.runner_state(&n).await, RunnerState::Released);
    assert!(w.github.runners().is_empty(), "GitHub runner deleted");
    assert!(w.jobs.sent().is_empty(), "a job that ran is not requeued");
}

#[tokio::test]
async fn idle_runner_is_tainted_then_deleted_after_the_grace_and_busy_ones_never() {
    let mut w = world();
    let idle = w
        .runner(R::new(1, RunnerState::Bootstrapped, Some(901)).github("online", false))
        .await;
    let busy_gh = w
        .runner(R::new(2, RunnerState::Bootstrapped, Some(2000)).github("online", true))
        .await;
    let busy_ledger = w
        .runner(
            R::new(3, RunnerState::Bootstrapped, Some(2000))
                .github("online", false)
                .job_state(JobState::Running),
        )
        .await;
    w.sync_capacity().await;
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::Taint, idle.clone())]);
    assert_eq!(w.runner_state(&idle).await, RunnerState::Tainted);
    assert!(
        w.compute
            .live()
            .iter()
            .any(|i| i.instance_id == "i-0001" && i.tag(tags::TAINTED).is_some())
    );
    assert!(w.live("i-0001"), "tainted, not yet deleted");
    // Within the grace period nothing more happens.
    w.now += Duration::minutes(5);
    assert!(w.pass(false).await.results.is_empty());
    // After it, the still-idle runner goes; the busy ones stay.
    w.now += Duration::minutes(6);
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteTainted, idle.clone())]
    );
    assert!(!w.live("i-0001"));
    assert_eq!(w.runner_state(&idle).await, RunnerState::Released);
    for (n, i) in [(busy_gh, "i-0002"), (busy_ledger, "i-0003")] {
        assert!(w.live(i));
        assert_eq!(w.runner_state(&n).await, RunnerState::Bootstrapped);
    }
}

#[tokio::test]
async fn a_tainted_runner_that_took_a_job_is_kept() {
    let w = world();
    // Tainted 2000 s ago (past the grace) but GitHub says it is busy now.
    let n = w
        .runner(R::new(1, RunnerState::Tainted, Some(2000)).github("online", true))
        .await;
    w.sync_capacity().await;
    let report = w.pass(false).await;
    assert!(
        report
            .results
            .iter()
            .all(|r| r.action.kind != ActionKind::DeleteTainted),
        "{report:?}"
    );
    assert_eq!(w.runner_state(&n).await, RunnerState::Tainted);
}

#[tokio::test]
async fn orphan_instance_is_terminated() {
    let w = world();
    w.instance("i-orphan", "sr_cpu-99-0", 99, 30);
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::TerminateOrphan, "i-orphan".into())]
    );
    assert_eq!(report.results[0].action.job_id, Some(99));
    assert!(!w.live("i-orphan"));
}

#[tokio::test]
async fn offline_github_runner_of_ours_without_instance_is_deleted() {
    let w = world();
    w.job(5, JobState::Completed, None, Duration::minutes(1));
    w.github_runner("sr_cpu-5-0", "offline", false);
    w.github_runner("sr_cpu-6-0", "online", false); // online: someone runs it
    w.github_runner("other-cpu-5-0", "offline", false); // not ours
    // Deployment `sr-prod` shares our name as a prefix: its runners are never ours,
    // nor are names in the old `{deployment}-{pool}-…` grammar.
    w.github_runner("sr-prod_cpu-5-0", "offline", false);
    w.github_runner("sr-cpu-7-0", "offline", false);
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteGitHubRunner, "sr_cpu-5-0".into())]
    );
    let left: Vec<String> = w.github.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(
        left,
        vec![
            "sr_cpu-6-0",
            "other-cpu-5-0",
            "sr-prod_cpu-5-0",
            "sr-cpu-7-0"
        ]
    );
}

#[tokio::test]
async fn leaked_parameters_are_deleted_and_live_ones_kept() {
    let w = world();
    let live = w
        .runner(R::new(1, RunnerState::Bootstrapped, Some(10)).github("offline", false))
        .await;
    w.sync_capacity().await;
    w.param("sr_cpu-77-0").await;
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::DeleteParameter, "/sr/jit/sr_cpu-77-0".into())]
    );
    assert_eq!(w.params.names(), vec![format!("/sr/jit/{live}")]);
}

#[tokio::test]
async fn wrong_capacity_counters_are_repaired() {
    let w = world();
    w.runner(R::new(1, RunnerState::Bootstrapped, Some(10)))
        .await;
    w.runner(R::new(2, RunnerState::Bootstrapped, Some(10)))
        .await;
    w.ledger
        .set_capacity(&CapacityUse {
            pools: [("cpu".to_string(), 7), ("gone".to_string(), 2)].into(),
            weight: 9,
        })
        .await
        .unwrap();
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::RepairCapacity, "capacity".into())]
    );
    assert_eq!(
        w.ledger.capacity().await.unwrap(),
        CapacityUse {
            pools: [("cpu".to_string(), 2)].into(),
            weight: 2
        }
    );
}

#[tokio::test]
async fn runner_whose_instance_vanished_is_released_and_its_job_requeued() {
    let w = world();
    let n = w
        .runner(R::new(1, RunnerState::Bootstrapped, Some(60)))
        .await;
    w.sync_capacity().await;
    w.compute.state.lock().unwrap().instances.clear();
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::ReleaseLost, n.clone())]);
    assert_eq!(w.runner_state(&n).await, RunnerState::Released);
    assert_eq!(w.job_state(1).await, JobState::Requeued);
    assert_eq!(w.jobs.sent().len(), 1);
    assert_eq!(w.ledger.capacity().await.unwrap().weight, 0);
}

#[tokio::test]
async fn stale_jobs_are_requeued_completed_or_dropped_as_github_says() {
    let w = world();
    w.job(1, JobState::Launched, None, Duration::minutes(40)); // webhook/VM lost
    w.github.set_job(1, "queued");
    w.github.set_job(2, "queued");
    w.job(2, JobState::Requeued, None, Duration::minutes(40)); // requeue message lost
    w.job(3, JobState::Launched, None, Duration::hours(25)); // past 24 h
    w.job(4, JobState::Launched, None, Duration::minutes(40)); // GitHub finished it
    w.github.set_job(4, "completed");
    w.job(5, JobState::Launched, None, Duration::minutes(5)); // not stale yet
    w.job(6, JobState::Running, None, Duration::hours(2)); // running: the webhook ends it
    let report = w.pass(false).await;
    assert_eq!(
        kinds(&report),
        vec![
            (ActionKind::RequeueJob, "1".into()),
            (ActionKind::RequeueJob, "2".into()),
            (ActionKind::CompleteJob, "4".into()),
            (ActionKind::DropJob, "3".into()),
        ]
    );
    let mut sent: Vec<(u64, u32)> = w
        .jobs
        .sent()
        .iter()
        .map(|m| (m.job_id, m.launch_attempt))
        .collect();
    sent.sort();
    assert_eq!(sent, vec![(1, 1), (2, 1)]);
    assert_eq!(w.job_state(3).await, JobState::Dropped);
    assert_eq!(w.job_state(4).await, JobState::Completed);
    assert_eq!(w.job_state(5).await, JobState::Launched);
    assert_eq!(w.job_state(6).await, JobState::Running);
}

#[tokio::test]
async fn a_stale_job_github_no_longer_has_is_dropped() {
    let w = world();
    w.job(1, JobState::Launched, None, Duration::minutes(40));
    let report = w.pass(false).await;
    assert_eq!(kinds(&report), vec![(ActionKind::DropJob, "1".into())]);
    assert_eq!(
        report.results[0].action.reason,
        "GitHub no longer has the job"
    );
    assert_eq!(w.job_state(1).await, JobState::Dropped);
}

#[tokio::test]
async fn messy_account_dry_run_lists_exactly_what_the_real_run_does() {
    let mut w = world();
    // Healthy: just bootstrapped, idle but young, busy past idle, running per ledger.
    let healthy = [
        w.runner(R::new(10, RunnerState::Bootstrapped, Some(30)).github("offline", false))
            .await,
        w.runner(R::new(11, RunnerState::Bootstrapped, Some(120)).github("online", false))
            .await,
        w.runner(R::new(12, RunnerState::Bootstrapped, Some(1800)).github("online", true))
            .await,
        w.runner(
            R::new(13, RunnerState::Bootstrapped, Some(1800))
                .github("online", false)
                .job_state(JobState::Running),
        )
        .await,
    ];
    // Leaks of every kind.
    let boot = w.runner(R::new(20, RunnerState::Launched, Some(400))).await;
    let maxrun = w
        .runner(R::new(21, RunnerState::Bootstrapped, Some(4000)).job_state(JobState::Running))
        .await;
    let idle = w
        .runner(R::new(22, RunnerState::Bootstrapped, Some(1000)).github("online", false))
        .await;
    let lost = w
        .runner(R::new(23, RunnerState::Bootstrapped, Some(100)))
        .await;
    w.instance("i-orphan", "sr_cpu-24-0", 24, 60);
    w.job(25, JobState::Completed, None, Duration::minutes(3));
    w.github_runner("sr_cpu-25-0", "offline", false);
    w.param("sr_cpu-26-0").await;
    w.job(27, JobState::Launched, None, Duration::minutes(45));
    w.github.set_job(27, "queued");
    w.sync_capacity().await;
    w.compute.state.lock().unwrap().instances.remove("i-0023");
    let mut cap = w.ledger.capacity().await.unwrap();
    cap.weight += 3;
    w.ledger.set_capacity(&cap).await.unwrap();

    let dry = w.pass(true).await;
    assert!(dry.results.iter().all(|r| !r.done));
    assert_eq!(w.jobs.sent().len(), 0, "a dry run changes nothing");
    assert_eq!(w.compute.live().len(), 8);
    let real = w.pass(false).await;
    assert_eq!(dry.actions(), real.actions());
    assert_eq!(real.failed(), 0, "{real:?}");
    assert_eq!(
        kinds(&real),
        vec![
            (ActionKind::BootTimeout, boot.clone()),
            (ActionKind::MaxRunTime, maxrun.clone()),
            (ActionKind::Taint, idle.clone()),
            (ActionKind::ReleaseLost, lost.clone()),
            (ActionKind::TerminateOrphan, "i-orphan".into()),
            (ActionKind::DeleteGitHubRunner, "sr_cpu-25-0".into()),
            (ActionKind::DeleteParameter, "/sr/jit/sr_cpu-26-0".into()),
            (ActionKind::RequeueJob, "27".into()),
            (ActionKind::RepairCapacity, "capacity".into()),
        ]
    );
    // Healthy and busy runners untouched.
    for (i, n) in healthy.iter().enumerate() {
        let s = w.runner_state(n).await;
        assert_ne!(s, RunnerState::Released, "{n}");
        assert_ne!(s, RunnerState::Tainted, "{n}");
        assert!(w.live(&format!("i-{:04}", 10 + i)), "{n}");
    }
    // Every leak is gone once the tainted runner's grace has passed.
    w.now += Duration::minutes(11);
    let last = w.pass(false).await;
    assert_eq!(
        kinds(&last),
        vec![(ActionKind::DeleteTainted, idle.clone())]
    );
    let live: Vec<String> = w
        .compute
        .live()
        .into_iter()
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(live, vec!["i-0010", "i-0011", "i-0012", "i-0013"]);
    let cap = w.ledger.capacity().await.unwrap();
    assert_eq!(cap.weight, 4);
    assert!(w.github.runners().iter().all(|r| r.name != "sr_cpu-25-0"));
    assert_eq!(w.params.names().len(), 4);
    w.now += Duration::minutes(1);
    assert!(w.pass(false).await.results.is_empty(), "nothing left to do");
}

// --- Races: another handler acts while a pass runs. ---------------------------

const CAP: Limits = Limits {
    pool_max: 3,
    weight: 1,
    global_max_weight: None,
};

/// A fresh reservation, as create-runner's first step writes it.
fn reservation(job: u64, now: DateTime<Utc>) -> RunnerRecord {
    let n = name(job);
    RunnerRecord {
        name: n.clone(),
        pool: "cpu".into(),
        job_id: job,
        weight: 1,
        state: RunnerState::Reserved,
        instance_id: None,
        command_id: None,
        github_runner_id: None,
        jit_parameter: format!("/sr/jit/{n}"),
        created_at: now,
        launched_at: None,
        updated_at: now,
        end_reason: None,
    }
}

impl World {
    /// This world's janitor on a [`RacingLedger`] with the given hooks.
    fn racing(
        &self,
        after_list_runners: Option<Hook>,
        before_counter_write: Option<Hook>,
    ) -> Janitor {
        let ledger = Arc::new(RacingLedger::new(
            self.ledger.clone(),
            after_list_runners,
            before_counter_write,
        ));
        Janitor {
            ledger,
            ..self.janitor.clone()
        }
    }

    /// A runner of job `job` that ended an hour ago (released), as its record,
    /// job and leftovers stand: an instance tagged with its name, its
    /// parameter, and its GitHub registration, offline.
    async fn released_with_leftovers(&self, job: u64) -> String {
        let n = name(job);
        let mut record = reservation(job, self.now - Duration::hours(2));
        record.state = RunnerState::Released;
        record.updated_at = self.now - Duration::hours(1);
        self.ledger.put_runner(record);
        self.job(job, JobState::Claimed, None, Duration::minutes(1));
        self.instance(&format!("i-{job:04}"), &n, job, 3600);
        self.param(&n).await;
        self.github_runner(&n, "offline", false);
        n
    }

    fn registered(&self, runner: &str) -> bool {
        self.github.runners().iter().any(|r| r.name == runner)
    }
}

fn errors(report: &JanitorReport) -> Vec<(ActionKind, String)> {
    report
        .results
        .iter()
        .filter_map(|r| Some((r.action.kind, r.error.clone()?)))
        .collect()
}

/// Race (a): create-runner reserves, registers and writes the parameter right
/// after the janitor read the runners. Read before the listings (the old order),
/// its registration and parameter looked like leaks and were deleted.
#[tokio::test]
async fn a_runner_created_right_after_the_ledger_read_keeps_its_registration_and_parameter() {
    let w = world();
    w.job(5, JobState::Completed, None, Duration::minutes(1)); // a known scope
    let n = name(1);
    let (ledger, github, params, now) =
        (w.ledger.clone(), w.github.clone(), w.params.clone(), w.now);
    let create_runner: Hook = Box::new(move || {
        Box::pin(async move {
            let msg = message(1, Duration::seconds(5), now);
            ledger
                .claim_job(&msg, now, Duration::minutes(5))
                .await
                .unwrap();
            let reserved = ledger.reserve(&reservation(1, now), CAP).await.unwrap();
            assert_eq!(reserved, ReserveOutcome::Reserved);
            let jit = github
                .create_jit_config(&crate::ports::JitRequest {
                    target: crate::ports::GitHubTarget {
                        scope: crate::ports::RunnerScope::Org { org: "o".into() },
                        installation_id: None,
                    },
                    name: name(1),
                    runner_group: "Default".into(),
                    labels: vec!["linux".into()],
                    work_folder: "_work".into(),
                })
                .await
                .unwrap();
            let change = RunnerChange {
                github_runner_id: Some(jit.runner_id),
                ..RunnerChange::default()
            };
            ledger.update_runner(&name(1), &change, now).await.unwrap();
            params
                .put(
                    &format!("/sr/jit/{}", name(1)),
                    &jit.encoded_jit_config,
                    &[],
                )
                .await
                .unwrap();
        })
    });
    let janitor = w.racing(Some(create_runner), None);
    let report = janitor.run(w.now, false).await.unwrap();
    assert!(w.registered(&n), "registration deleted: {report:?}");
    assert_eq!(w.params.names(), vec![format!("/sr/jit/{n}")], "{report:?}");
    assert_eq!(w.runner_state(&n).await, RunnerState::Reserved);
}

/// Race (a), the other way to get there: the runner's name was released an
/// hour ago and its leftovers are still around (the snapshot sees them, and no
/// live record), then the same job attempt reserves the name again before the
/// janitor acts. The re-read by name keeps the registration and the parameter.
#[tokio::test]
async fn leftovers_of_a_name_reserved_again_before_the_action_are_kept() {
    let w = world();
    let n = w.released_with_leftovers(1).await;
    w.compute.state.lock().unwrap().instances.clear();
    let (ledger, now) = (w.ledger.clone(), w.now);
    let reserve_again: Hook = Box::new(move || {
        Box::pin(async move {
            let again = ledger.reserve(&reservation(1, now), CAP).await.unwrap();
            assert_eq!(again, ReserveOutcome::Reserved);
        })
    });
    let report = w
        .racing(Some(reserve_again), None)
        .run(w.now, false)
        .await
        .unwrap();
    let planned = kinds(&report);
    assert!(
        planned.contains(&(ActionKind::DeleteGitHubRunner, n.clone()))
            && planned.contains(&(ActionKind::DeleteParameter, format!("/sr/jit/{n}"))),
        "the snapshot saw leftovers: {report:?}"
    );
    assert!(w.registered(&n), "{report:?}");
    assert_eq!(w.params.names(), vec![format!("/sr/jit/{n}")], "{report:?}");
    for (_, error) in errors(&report) {
        assert!(error.contains("is reserved in the ledger now"), "{error}");
    }
}

/// Race (b): an instance tagged with a released runner's name (launched by
/// an earlier try of the same job attempt: same `ClientToken`) is planned as an
/// orphan; before the janitor acts, the retry reserves the name again and
/// records that same instance. It is not terminated.
#[tokio::test]
async fn an_instance_whose_runner_became_live_meanwhile_is_not_terminated() {
    let w = world();
    let n = w.released_with_leftovers(1).await;
    let (ledger, now) = (w.ledger.clone(), w.now);
    let relaunch: Hook = Box::new(move || {
        Box::pin(async move {
            ledger.reserve(&reservation(1, now), CAP).await.unwrap();
            let change = RunnerChange {
                state: Some(RunnerState::Launched),
                instance_id: Some("i-0001".into()),
                launched_at: Some(now),
                ..RunnerChange::default()
            };
            ledger.update_runner(&name(1), &change, now).await.unwrap();
        })
    });
    let report = w
        .racing(Some(relaunch), None)
        .run(w.now, false)
        .await
        .unwrap();
    assert!(
        kinds(&report).contains(&(ActionKind::TerminateOrphan, "i-0001".into())),
        "the snapshot saw an orphan: {report:?}"
    );
    assert!(
        w.live("i-0001"),
        "the live runner's instance was terminated"
    );
    assert_eq!(w.runner_state(&n).await, RunnerState::Launched);
    assert!(
        w.registered(&n) && w.params.names().len() == 1,
        "{report:?}"
    );
}

/// Race (c): a reservation lands between the janitor's recount and its write
/// of the counters. It is not overwritten, so the cap still holds; the next
/// pass repairs the counters.
#[tokio::test]
async fn a_reservation_between_the_count_and_the_repair_is_not_lost() {
    let w = world();
    w.runner(R::new(1, RunnerState::Bootstrapped, Some(10)))
        .await;
    // One phantom slot (a release that never decremented): counters say 2.
    w.ledger
        .set_capacity(&CapacityUse {
            pools: [("cpu".to_string(), 2)].into(),
            weight: 2,
        })
        .await
        .unwrap();
    let (ledger, now) = (w.ledger.clone(), w.now);
    let reserve: Hook = Box::new(move || {
        Box::pin(async move {
            let got = ledger.reserve(&reservation(2, now), CAP).await.unwrap();
            assert_eq!(got, ReserveOutcome::Reserved);
        })
    });
    let report = w
        .racing(None, Some(reserve))
        .run(w.now, false)
        .await
        .unwrap();
    assert_eq!(
        kinds(&report),
        vec![(ActionKind::RepairCapacity, "capacity".into())]
    );
    // Two live runners and the phantom: not overwritten with the recount of 1.
    let three = CapacityUse {
        pools: [("cpu".to_string(), 3)].into(),
        weight: 3,
    };
    assert_eq!(w.ledger.capacity().await.unwrap(), three, "{report:?}");
    // The cap (3) holds: no third runner fits now.
    assert_eq!(
        w.ledger.reserve(&reservation(3, now), CAP).await.unwrap(),
        ReserveOutcome::PoolFull
    );
    let error = report.results[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("capacity changed after the recount"),
        "{report:?}"
    );
    // The next pass (nothing racing) counts 2 and repairs; one more fits, then none.
    let report = w.pass(false).await;
    assert_eq!(report.failed(), 0, "{report:?}");
    let two = CapacityUse {
        pools: [("cpu".to_string(), 2)].into(),
        weight: 2,
    };
    assert_eq!(w.ledger.capacity().await.unwrap(), two);
    assert_eq!(
        w.ledger.reserve(&reservation(3, now), CAP).await.unwrap(),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        w.ledger.reserve(&reservation(4, now), CAP).await.unwrap(),
        ReserveOutcome::PoolFull
    );
    let live = w.ledger.list_runners().await.unwrap();
    assert_eq!(
        live.iter()
            .filter(|r| r.state != RunnerState::Released)
            .count(),
        3
    );
}

/// Leftovers of a runner released moments ago wait for the grace: the same
/// job attempt may reserve the name again and reuse them.
#[tokio::test]
async fn leftovers_of_a_runner_released_moments_ago_wait_for_the_grace() {
    let mut w = world();
    let n = w.released_with_leftovers(1).await;
    let mut record = w.ledger.get_runner(&n).await.unwrap().unwrap();
    record.updated_at = w.now - Duration::seconds(60);
    w.ledger.put_runner(record);
    let report = w.pass(false).await;
    assert_eq!(report.failed(), 3, "{report:?}");
    for (_, error) in errors(&report) {
        assert!(error.contains("within the 600 s grace"), "{error}");
    }
    assert!(w.live("i-0001") && w.registered(&n) && w.params.names().len() == 1);
    w.now += execute::LEFTOVER_GRACE;
    let report = w.pass(false).await;
    assert_eq!(report.failed(), 0, "{report:?}");
    assert!(!w.live("i-0001") && !w.registered(&n) && w.params.names().is_empty());
}

/// The ledger may name an instance the (earlier) instance list did not show:
/// it was launched in between. `release_lost` asks the cloud again.
#[tokio::test]
async fn a_runner_whose_instance_the_list_missed_is_not_released() {
    let w = world();
    let n = w.runner(R::new(1, RunnerState::Launched, Some(10))).await;
    w.sync_capacity().await;
    let launched = w.compute.state.lock().unwrap().instances.remove("i-0001");
    let compute = w.compute.clone();
    let appear: Hook = Box::new(move || {
        Box::pin(async move {
            let launched = launched.unwrap();
            compute
                .state
                .lock()
                .unwrap()
                .instances
                .insert("i-0001".into(), launched);
        })
    });
    let report = w
        .racing(Some(appear), None)
        .run(w.now, false)
        .await
        .unwrap();
    assert_eq!(kinds(&report), vec![(ActionKind::ReleaseLost, n.clone())]);
    assert_eq!(
        w.runner_state(&n).await,
        RunnerState::Launched,
        "{report:?}"
    );
    assert!(
        report.results[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("is live")
    );
    assert!(w.jobs.sent().is_empty());
}

/// A stale job that a create-runner claimed right after the snapshot is not
/// requeued a second time.
#[tokio::test]
async fn a_stale_job_claimed_meanwhile_is_not_requeued() {
    let w = world();
    w.job(1, JobState::Requeued, None, Duration::minutes(40));
    w.github.set_job(1, "queued");
    let (ledger, now) = (w.ledger.clone(), w.now);
    let claim: Hook = Box::new(move || {
        Box::pin(async move {
            let mut msg = message(1, Duration::minutes(41), now);
            msg.launch_attempt = 1;
            let got = ledger
                .claim_job(&msg, now, Duration::minutes(5))
                .await
                .unwrap();
            assert!(
                matches!(got, crate::ports::ClaimOutcome::Claimed(_)),
                "{got:?}"
            );
        })
    });
    let report = w.racing(Some(claim), None).run(w.now, false).await.unwrap();
    assert_eq!(kinds(&report), vec![(ActionKind::RequeueJob, "1".into())]);
    assert!(w.jobs.sent().is_empty(), "{report:?}");
    assert_eq!(w.job_state(1).await, JobState::Claimed);
}
