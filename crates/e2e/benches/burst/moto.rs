//! P2 and P3 on moto: the real handlers, each built by its own Lambda wiring
//! (`*_from_env`, the environment Terraform hands it) with the SDK pointed at
//! its own listener of a zero-fault proxy in front of moto (so every AWS call
//! is counted per handler, service and operation), and the GitHub client at
//! its own listener of a proxy in front of the fake GitHub.
//!
//! The harness plays what AWS and GitHub do around them:
//! - the SQS → Lambda poller (`pollers` concurrent invocations per queue,
//!   batches of 10, successes deleted with `DeleteMessageBatch`, failures left
//!   to the visibility timeout the handler set) — through the `poller` listener;
//! - the VM: when a runner command reached SSM, the runner reads and deletes
//!   its JIT parameter (listener `runner-vm`), GitHub gives it its job
//!   (`in_progress` webhook), the job runs `run_secs`, ends (`completed`
//!   webhook), and the command's `Success` status event goes to stop-runner
//!   (moto never fires EventBridge); every terminated instance gets its
//!   `terminated` state event.
//!
//! The create-runner settings are the Lambda's defaults except the first
//! bootstrap delay (0: moto's instances have no SSM agent to wait for).

use crate::common;
use crate::payloads::{self, Job, SECRET};
use crate::stats::{self, secs};
use crate::{Case, send_all};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spotrunner_aws::dynamodb::DynamoLedger;
use spotrunner_core::ports::{Ledger, RunnerScope, tags};
use spotrunner_core::stop_runner::StopEvent;
use spotrunner_core::webhook::{WebhookRequest, WebhookService};
use spotrunner_testkit::fake_github::{self, FakeGitHub, FakeJob};
use spotrunner_testkit::fault_proxy::{FaultConfig, FaultProxy, Record, form_pairs, form_value};
use spotrunner_testkit::moto::Moto;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOCUMENT: &str = "sr-runner";
const POOL: &str = "bench";
const INSTANCE_ARN_PREFIX: &str = "arn:aws:ec2:us-east-1:123456789012:instance/";

struct World {
    _moto: Moto,
    aws: FaultProxy,
    gh: FaultProxy,
    github: Arc<FakeGitHub>,
    direct: DynamoLedger,
    /// The VM's own SSM calls (bootstrap.sh), through `runner-vm`.
    vm_ssm: aws_sdk_ssm::Client,
    poller_sqs: aws_sdk_sqs::Client,
    webhook: Arc<WebhookService>,
    create: Arc<spotrunner_create_runner::Handler>,
    stop: Arc<spotrunner_stop_runner::Handler>,
    jobs_url: String,
    boot_url: String,
}

async fn sdk(url: &str) -> aws_config::SdkConfig {
    spotrunner_aws::sdk::local(url).await
}

fn config_json(github_url: &str, subnet: &str, max_runners: u32) -> String {
    json!({
        "deployment": "sr",
        // GitHub's example payloads are of public repositories, of any owner.
        "allowed_owners": ["*"],
        "allow_public_repositories": true,
        "github": {
            "api_url": github_url,
            "auth": { "type": "app", "app_id": fake_github::APP_ID.parse::<u64>().unwrap(),
                      "private_key": "ssm:/sr/github/app-key" },
        },
        "webhook": { "secrets": ["ssm:/sr/webhook/secret"] },
        "pools": [{
            "name": POOL,
            "labels": payloads::POOL_LABELS,
            "launch_template": "sr-bench",
            "instance_types": ["t3.micro", "t3.small"],
            "subnets": [subnet],
            "max_runners": max_runners,
            "boot_timeout_secs": 900,
            "max_run_time_secs": 3600,
        }],
    })
    .to_string()
}

async fn world(case: &Case, installations: &mut HashMap<String, u64>) -> World {
    let moto = Moto::start();
    let direct_sdk = sdk(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&direct_sdk);
    let ec2 = aws_sdk_ec2::Client::new(&direct_sdk);
    let ssm = aws_sdk_ssm::Client::new(&direct_sdk);
    let mut urls = Vec::new();
    for q in ["sr-jobs", "sr-bootstrap"] {
        let out = sqs.create_queue().queue_name(q).send().await.unwrap();
        urls.push(out.queue_url.unwrap());
    }
    let subnet = common::network(&ec2, &["sr-bench"]).await;
    ssm.create_document()
        .name(DOCUMENT)
        .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .unwrap();
    spotrunner_aws::dynamodb::create_table(
        &aws_sdk_dynamodb::Client::new(&direct_sdk),
        "sr-ledger",
    )
    .await
    .unwrap();

    let github = Arc::new(FakeGitHub::start().await);
    // The examples' owners: an organisation and a user (its repository).
    installations.insert(
        "Octocoders".into(),
        github.add_installation(RunnerScope::Org {
            org: "Octocoders".into(),
        }),
    );
    installations.insert(
        "lineville".into(),
        github.add_installation(RunnerScope::Repo {
            owner: "lineville".into(),
            repo: "elastic-machines-testing".into(),
        }),
    );
    let aws = FaultProxy::start(
        moto.url(),
        FaultConfig::new("aws", 1).rate(0.0).record_bodies([
            "CreateFleet",
            "SendCommand",
            "TerminateInstances",
        ]),
    )
    .await;
    let gh = FaultProxy::start(&github.url(), FaultConfig::new("github", 1).rate(0.0)).await;
    common::put_secure(&ssm, "/sr/github/app-key", fake_github::APP_PRIVATE_KEY_PEM).await;
    common::put_secure(&ssm, "/sr/webhook/secret", SECRET).await;
    let env: BTreeMap<String, String> = [
        ("SPOTRUNNER_JOBS_QUEUE_URL", urls[0].as_str()),
        ("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", urls[1].as_str()),
        ("SPOTRUNNER_LEDGER_TABLE", "sr-ledger"),
        ("SPOTRUNNER_SSM_DOCUMENT", DOCUMENT),
        ("SPOTRUNNER_BUCKET", "sr-bucket"),
        ("SPOTRUNNER_INSTANCE_ARN_PREFIX", INSTANCE_ARN_PREFIX),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // One configuration document per handler: each calls GitHub through its
    // own proxy listener.
    let mut front = BTreeMap::new();
    for handler in ["webhook", "create-runner", "stop-runner"] {
        let url = gh.add_front(handler).await;
        common::put_secure(
            &ssm,
            &format!("/sr/config/{handler}"),
            &config_json(&url, &subnet, case.max_runners),
        )
        .await;
        front.insert(handler, sdk(&aws.add_front(handler).await).await);
    }
    let env_of = |handler: &str| {
        let mut env = env.clone();
        env.insert(
            spotrunner_aws::runtime::CONFIG_PARAMETER_ENV.into(),
            format!("/sr/config/{handler}"),
        );
        env
    };
    let webhook = spotrunner_webhook::service_from_env(&front["webhook"], &env_of("webhook"))
        .await
        .expect("webhook cold start");
    let mut create = spotrunner_create_runner::handler_from_env(
        &front["create-runner"],
        &env_of("create-runner"),
    )
    .await
    .expect("create-runner cold start");
    create.create_runner.settings.first_bootstrap_delay = Duration::ZERO;
    let stop =
        spotrunner_stop_runner::handler_from_env(&front["stop-runner"], &env_of("stop-runner"))
            .await
            .expect("stop-runner cold start");
    let vm_ssm = aws_sdk_ssm::Client::new(&sdk(&aws.add_front("runner-vm").await).await);
    let poller_sqs = aws_sdk_sqs::Client::new(&sdk(&aws.add_front("poller").await).await);
    World {
        _moto: moto,
        aws,
        gh,
        github,
        direct: DynamoLedger::new(&direct_sdk, "sr-ledger"),
        vm_ssm,
        poller_sqs,
        webhook: Arc::new(webhook),
        create: Arc::new(create),
        stop: Arc::new(stop),
        jobs_url: urls[0].clone(),
        boot_url: urls[1].clone(),
    }
}

/// One Lambda event source mapping: receive, invoke, delete the successes.
async fn poll(w: Arc<World>, boot: bool, stop: Arc<AtomicBool>) {
    let (url, name) = if boot {
        (w.boot_url.clone(), "sr-bootstrap")
    } else {
        (w.jobs_url.clone(), "sr-jobs")
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(out) = w
            .poller_sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let event = common::sqs_event(&msgs, name);
        let resp = w.create.handle(event).await;
        let failed: BTreeSet<String> = resp
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        let mut batch = w.poller_sqs.delete_message_batch().queue_url(&url);
        let mut any = false;
        for (i, m) in msgs.iter().enumerate() {
            if !failed.contains(m.message_id().unwrap_or_default()) {
                any = true;
                batch = batch.entries(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .unwrap(),
                );
            }
        }
        if any {
            let _ = batch.send().await;
        }
    }
}

/// What the harness saw happen, from the proxy's records and its own play.
#[derive(Default)]
struct Seen {
    /// First CreateFleet that reached moto, per job.
    launched: HashMap<u64, DateTime<Utc>>,
    launches: usize,
    /// instance → (runner, job, launched at)
    instances: HashMap<String, (String, u64, DateTime<Utc>)>,
    /// instance → terminated at
    terminated: HashMap<String, DateTime<Utc>>,
    commands: BTreeSet<String>,
    job_started: HashMap<u64, DateTime<Utc>>,
    job_ended: HashMap<u64, DateTime<Utc>>,
    stop_failures: usize,
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let a = text.find(open)? + open.len();
    let b = text[a..].find(close)? + a;
    Some(&text[a..b])
}

async fn deliver(w: &World, event: StopEvent) -> bool {
    let json = event.to_eventbridge();
    for _ in 0..30 {
        if w.stop.handle(json.clone()).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn webhook(w: &World, job: &Job, action: &str, runner: &str) {
    let (body, sig) = payloads::progressed(job, action, runner);
    let guid = uuid::Uuid::new_v4().to_string();
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: Some(&guid),
        signature: Some(&sig),
        body: &body,
    };
    for _ in 0..30 {
        if w.webhook.handle(&req, chrono::Utc::now()).await.status < 300 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The VM and GitHub around one runner whose command reached SSM.
#[allow(clippy::too_many_arguments)]
async fn run_runner(
    w: Arc<World>,
    seen: Arc<Mutex<Seen>>,
    job: Arc<Job>,
    runner: String,
    instance: String,
    command: String,
    run: Duration,
    done: Arc<AtomicUsize>,
) {
    // bootstrap.sh: read and delete the JIT parameter.
    let param = format!("/sr/jit/{runner}");
    let _ = w
        .vm_ssm
        .get_parameter()
        .name(&param)
        .with_decryption(true)
        .send()
        .await;
    let _ = w.vm_ssm.delete_parameter().name(&param).send().await;
    // GitHub gives the runner its job.
    w.github.set_runner_status(&runner, "online", true);
    w.github.set_job(
        &job.repo,
        FakeJob {
            id: job.id,
            status: "in_progress".into(),
            conclusion: None,
            runner_name: Some(runner.clone()),
        },
    );
    seen.lock().unwrap().job_started.insert(job.id, Utc::now());
    webhook(&w, &job, "in_progress", &runner).await;
    tokio::time::sleep(run).await;
    seen.lock().unwrap().job_ended.insert(job.id, Utc::now());
    w.github.set_job(
        &job.repo,
        FakeJob {
            id: job.id,
            status: "completed".into(),
            conclusion: Some("success".into()),
            runner_name: Some(runner.clone()),
        },
    );
    w.github.set_runner_status(&runner, "offline", false);
    webhook(&w, &job, "completed", &runner).await;
    let ok = deliver(
        &w,
        StopEvent::CommandStatus {
            instance_id: instance,
            command_id: command,
            document: DOCUMENT.into(),
            status: "Success".into(),
        },
    )
    .await;
    if !ok {
        seen.lock().unwrap().stop_failures += 1;
    }
    done.fetch_add(1, Ordering::Relaxed);
}

/// Follow the proxy's records: launches, runner commands, terminations.
#[allow(clippy::too_many_arguments)]
fn follow(
    w: &Arc<World>,
    seen: &Arc<Mutex<Seen>>,
    jobs: &HashMap<u64, Arc<Job>>,
    records: &[Record],
    run: Duration,
    done: &Arc<AtomicUsize>,
) {
    for r in records {
        let ok = r.reached_upstream && r.upstream_status == Some(200);
        match r.op.as_str() {
            "CreateFleet" if ok => {
                let body = r.request_body.as_deref().unwrap_or("");
                let pairs = form_pairs(body);
                let runner = pairs
                    .iter()
                    .find(|(k, v)| k.ends_with(".Key") && v == tags::RUNNER_NAME)
                    .and_then(|(k, _)| form_value(body, &k.replace(".Key", ".Value")));
                let answer = r.upstream_body.as_deref().unwrap_or("");
                let instance = between(answer, "<instanceIds>", "</instanceIds>")
                    .and_then(|s| between(s, "<item>", "</item>"));
                if let (Some(runner), Some(instance)) = (runner, instance)
                    && let Some(job) = stats::job_of_runner(&runner)
                {
                    let at: DateTime<Utc> = r.at.into();
                    let mut s = seen.lock().unwrap();
                    s.launches += 1;
                    let e = s.launched.entry(job).or_insert(at);
                    if at < *e {
                        *e = at;
                    }
                    s.instances
                        .insert(instance.trim().to_string(), (runner, job, at));
                }
            }
            "SendCommand" if ok => {
                let req: Value = serde_json::from_str(r.request_body.as_deref().unwrap_or("{}"))
                    .unwrap_or_default();
                let resp: Value = serde_json::from_str(r.upstream_body.as_deref().unwrap_or("{}"))
                    .unwrap_or_default();
                let (Some(instance), Some(command)) = (
                    req["InstanceIds"][0].as_str(),
                    resp["Command"]["CommandId"].as_str(),
                ) else {
                    continue;
                };
                let mut s = seen.lock().unwrap();
                if !s.commands.insert(instance.to_string()) {
                    continue; // a second command on the VM: bootstrap.sh runs once
                }
                let Some((runner, job, _)) = s.instances.get(instance).cloned() else {
                    continue;
                };
                let Some(job) = jobs.get(&job).cloned() else {
                    continue;
                };
                tokio::spawn(run_runner(
                    w.clone(),
                    seen.clone(),
                    job,
                    runner,
                    instance.to_string(),
                    command.to_string(),
                    run,
                    done.clone(),
                ));
            }
            "TerminateInstances" if r.reached_upstream => {
                let at: DateTime<Utc> = r.at.into();
                for (_, instance) in form_pairs(r.request_body.as_deref().unwrap_or(""))
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("InstanceId."))
                {
                    let fresh = seen
                        .lock()
                        .unwrap()
                        .terminated
                        .insert(instance.clone(), at)
                        .is_none();
                    if fresh {
                        let w = w.clone();
                        tokio::spawn(async move {
                            deliver(
                                &w,
                                StopEvent::InstanceState {
                                    instance_id: instance,
                                    state: "terminated".into(),
                                },
                            )
                            .await;
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

pub async fn run(case: &Case) -> Value {
    let mut installations = HashMap::new();
    let w = Arc::new(world(case, &mut installations).await);
    let mut jobs = payloads::jobs(case.jobs, 7_000_000);
    for j in &mut jobs {
        // The examples' installation ids, as the fake GitHub numbered them.
        let owner = j.payload["repository"]["owner"]["login"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(id) = installations.get(&owner) {
            j.payload["installation"]["id"] = (*id).into();
            j.body = serde_json::to_vec(&j.payload).unwrap();
            j.signature = spotrunner_core::webhook::sign(SECRET.as_bytes(), &j.body);
        }
        w.github.add_job(&j.repo, j.id, "queued");
    }
    let jobs: Vec<Arc<Job>> = jobs.into_iter().map(Arc::new).collect();
    let by_id: HashMap<u64, Arc<Job>> = jobs.iter().map(|j| (j.id, j.clone())).collect();
    // What the cold starts called is not per job.
    let base_aws = w.aws.counts();
    let base_gh = w.gh.counts();
    let first = w.aws.records().len();

    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for boot in [false, true] {
        for _ in 0..case.pollers.max(1) {
            tasks.push(tokio::spawn(poll(w.clone(), boot, stop.clone())));
        }
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(AtomicUsize::new(0));
    let run = Duration::from_secs_f64(case.run_secs);
    // Follow the proxy and sample the pool counter every 100 ms.
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let follower = {
        let (w, seen, done, stop, samples) = (
            w.clone(),
            seen.clone(),
            done.clone(),
            stop.clone(),
            samples.clone(),
        );
        tokio::spawn(async move {
            let mut next = first;
            while !stop.load(Ordering::Relaxed) {
                let records = w.aws.recorded_from(next);
                next += records.len();
                follow(&w, &seen, &by_id, &records, run, &done);
                let used = w
                    .direct
                    .capacity()
                    .await
                    .map(|c| f64::from(c.pools.get(POOL).copied().unwrap_or(0)))
                    .unwrap_or(f64::NAN);
                samples.lock().unwrap().push((Utc::now(), used));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let t0 = Utc::now();
    let started = Instant::now();
    let sent = send_all(case, &jobs, |job, _dup| {
        let (w, job) = (w.clone(), job.clone());
        async move {
            let req = WebhookRequest {
                method: "POST",
                event: Some("workflow_job"),
                delivery: Some(&job.delivery),
                signature: Some(&job.signature),
                body: &job.body,
            };
            w.webhook.handle(&req, chrono::Utc::now()).await.status
        }
    })
    .await;
    let sent_in = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(case.deadline_secs);
    let mut last_scan = Instant::now();
    let finished = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let used = samples.lock().unwrap().last().map_or(1.0, |s| s.1);
        let mut all = done.load(Ordering::Relaxed) >= jobs.len();
        if !all && last_scan.elapsed() > Duration::from_secs(10) {
            last_scan = Instant::now();
            let final_jobs = w
                .direct
                .list_jobs()
                .await
                .map(|js| js.iter().filter(|j| j.state.is_final()).count())
                .unwrap_or(0);
            all = final_jobs >= jobs.len();
        }
        if all && used == 0.0 {
            // Let the last terminated events through.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = follower.await;
    for t in tasks {
        let _ = t.await;
    }

    let job_states: BTreeMap<String, usize> = w
        .direct
        .list_jobs()
        .await
        .map(|js| {
            let mut m = BTreeMap::new();
            for j in js {
                *m.entry(j.state.as_str().to_string()).or_default() += 1;
            }
            m
        })
        .unwrap_or_default();
    let s = seen.lock().unwrap();
    let launch_latency: Vec<f64> = sent
        .originals
        .iter()
        .filter_map(|(i, at)| s.launched.get(&jobs[*i].id).map(|l| secs(*at, *l)))
        .collect();
    let last_launch = s.launched.values().max().map(|t| secs(t0, *t));
    let last_end = s.terminated.values().max().map(|t| secs(t0, *t));
    let end_s = secs(t0, Utc::now());
    let counter: Vec<(f64, f64)> = samples
        .lock()
        .unwrap()
        .iter()
        .map(|(t, v)| (secs(t0, *t), *v))
        .collect();
    let inst: Vec<(f64, f64)> = s
        .instances
        .iter()
        .map(|(i, (_, _, l))| {
            (
                secs(t0, *l),
                s.terminated.get(i).map_or(end_s, |t| secs(t0, *t)),
            )
        })
        .collect();
    let job_iv: Vec<(f64, f64)> = s
        .job_started
        .iter()
        .filter_map(|(id, a)| s.job_ended.get(id).map(|b| (secs(t0, *a), secs(t0, *b))))
        .collect();
    let util = match last_launch {
        Some(ll) => stats::utilisation(case.max_runners, &counter, &inst, &job_iv, ll),
        None => json!({ "saturated": false }),
    };
    let n = jobs.len() as f64;
    json!({
        "finished": finished,
        "send_s": stats::round3(sent_in.as_secs_f64()),
        "wall_s": stats::round3(wall.as_secs_f64()),
        "webhook_handler": stats::summary_ms(&sent.latencies_original),
        "webhook_handler_duplicates": stats::summary_ms(&sent.latencies_duplicate),
        "webhook_status": sent.statuses,
        "webhook_to_launch": stats::summary_ms(&launch_latency),
        "jobs_launched": s.launched.len(),
        "launches": s.launches,
        "all_launched_s": last_launch.map(stats::round3),
        "all_done_s": last_end.map(stats::round3),
        "job_states": job_states,
        "stop_event_failures": s.stop_failures,
        "utilisation": util,
        "p3": p3(&base_aws, &w.aws.counts(), &base_gh, &w.gh.counts(), n),
    })
}

/// The pool counter over time.
type Samples = Vec<(DateTime<Utc>, f64)>;

type Counts = BTreeMap<(String, String, String), usize>;

/// Calls per job: by service (and the handler that made them), by service
/// and operation; the GitHub proxy's calls are the `github` service.
fn p3(base_aws: &Counts, aws: &Counts, base_gh: &Counts, gh: &Counts, n: f64) -> Value {
    let mut by_service: BTreeMap<String, f64> = BTreeMap::new();
    let mut by_front: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut by_op: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut raw: BTreeMap<String, usize> = BTreeMap::new();
    // The SQS poller is Lambda's event source mapping, not the handlers: its
    // receives depend on how long queues sit empty (here: a 200 ms poll,
    // Lambda long-polls), so it is reported apart.
    let mut esm: BTreeMap<String, f64> = BTreeMap::new();
    for (counts, base) in [(aws, base_aws), (gh, base_gh)] {
        for (key, v) in counts {
            let d = v - base.get(key).copied().unwrap_or(0);
            if d == 0 {
                continue;
            }
            let (front, service, op) = key;
            raw.insert(format!("{front} {service} {op}"), d);
            if front == "poller" {
                *esm.entry(op.clone()).or_default() += d as f64;
                continue;
            }
            let service = if service == "query" {
                "sqs".to_string()
            } else {
                service.clone()
            };
            *by_service.entry(service.clone()).or_default() += d as f64;
            *by_front
                .entry(service.clone())
                .or_default()
                .entry(front.clone())
                .or_default() += d as f64;
            *by_op
                .entry(service.clone())
                .or_default()
                .entry(op.clone())
                .or_default() += d as f64;
        }
    }
    let per = |m: &BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        m.iter()
            .map(|(k, v)| (k.clone(), stats::round3(v / n)))
            .collect()
    };
    json!({
        "per_job_by_service": per(&by_service),
        "per_job_by_service_and_handler": by_front.iter().map(|(k, m)| (k.clone(), per(m))).collect::<BTreeMap<_, _>>(),
        "per_job_by_service_and_operation": by_op.iter().map(|(k, m)| (k.clone(), per(m))).collect::<BTreeMap<_, _>>(),
        "event_source_mapping_per_job": per(&esm),
        "calls": raw,
    })
}
