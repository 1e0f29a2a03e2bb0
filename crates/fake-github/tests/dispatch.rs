//! GitHub's dispatch in the fake: a queued job goes to the oldest-first idle
//! runner whose labels and scope fit, never to two runners, and its
//! `in_progress`/`completed` webhooks are delivered, signed, in order.

use axum::body::Bytes;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use spotrunner_fake_github::FakeGitHub;
use spotrunner_testkit::examples::examples;
use std::sync::{Arc, Mutex};

const PAT: &str = "dispatch-pat";
const SECRET: &str = "dispatch-secret";

/// What the webhook receiver got: (action, job id, runner name).
type Seen = Arc<Mutex<Vec<(String, u64, Option<String>)>>>;

/// A webhook receiver that checks every signature; returns its URL.
async fn receiver(seen: Seen) -> String {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let sig = headers
                    .get("x-hub-signature-256")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                assert_eq!(
                    sig,
                    spotrunner_core::webhook::sign(SECRET.as_bytes(), &body)
                );
                let v: Value = serde_json::from_slice(&body).unwrap();
                seen.lock().unwrap().push((
                    v["action"].as_str().unwrap().to_string(),
                    v["workflow_job"]["id"].as_u64().unwrap(),
                    v["workflow_job"]["runner_name"]
                        .as_str()
                        .map(str::to_string),
                ));
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/hook")
}

/// GitHub's queued example whose labels are `labels`, as job `id` created now.
fn queued(labels: &[&str], id: u64) -> Value {
    let ex = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .find(|e| e.payload["workflow_job"]["labels"] == json!(labels))
        .unwrap_or_else(|| panic!("a queued example labelled {labels:?}"));
    let mut p = ex.payload;
    p["workflow_job"]["id"] = id.into();
    p["workflow_job"]["run_id"] = (id + 1_000_000).into();
    p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
    p
}

/// `ubuntu-latest`, repository Octocoders/Hello-World.
fn ubuntu(id: u64) -> Value {
    queued(&["ubuntu-latest"], id)
}

/// `self-hosted` + `k8s`, repository lineville/elastic-machines-testing.
fn k8s(id: u64) -> Value {
    queued(&["self-hosted", "k8s"], id)
}

struct World {
    github: FakeGitHub,
    http: reqwest::Client,
    seen: Seen,
}

impl World {
    async fn new() -> World {
        let github = FakeGitHub::start().await;
        github.set_pat(PAT);
        let seen: Seen = Arc::default();
        github.set_webhook(&receiver(seen.clone()).await, SECRET);
        World {
            github,
            http: reqwest::Client::new(),
            seen,
        }
    }

    /// Register a JIT runner at `scope` (`orgs/x` or `repos/o/r`) as
    /// create-runner does.
    async fn register(&self, scope: &str, name: &str, labels: &[&str]) {
        self.register_in(scope, name, labels, 1).await
    }

    /// … in runner group `group`.
    async fn register_in(&self, scope: &str, name: &str, labels: &[&str], group: u64) {
        let r = self
            .http
            .post(format!(
                "{}/{scope}/actions/runners/generate-jitconfig",
                self.github.url()
            ))
            .bearer_auth(PAT)
            .json(&json!({ "name": name, "runner_group_id": group, "labels": labels }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    }

    /// `acquire`: the status and the job id, if one came.
    async fn acquire(&self, name: &str) -> (u16, Option<u64>) {
        let r = self
            .http
            .post(format!(
                "{}/_fake/runners/{name}/acquire",
                self.github.url()
            ))
            .send()
            .await
            .unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        (code, body["job_id"].as_u64())
    }

    async fn complete(&self, name: &str, body: Option<Value>) -> (u16, Value) {
        let mut rb = self.http.post(format!(
            "{}/_fake/runners/{name}/complete",
            self.github.url()
        ));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn job(&self, repo: &str, id: u64) -> Value {
        self.http
            .get(format!(
                "{}/repos/{repo}/actions/jobs/{id}",
                self.github.url()
            ))
            .bearer_auth(PAT)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn seen(&self) -> Vec<(String, u64, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

fn u1_id(w: &World) -> u64 {
    w.github
        .runners()
        .iter()
        .find(|r| r.name == "u1")
        .unwrap()
        .id
}

const UBUNTU_REPO: &str = "Octocoders/Hello-World";
const K8S_REPO: &str = "lineville/elastic-machines-testing";

#[tokio::test]
async fn oldest_fitting_job_goes_to_a_runner_whose_labels_and_scope_cover_it() {
    let w = World::new().await;
    // Queued in this order: 1 (ubuntu), 2 (k8s), 3 (ubuntu).
    assert_eq!(w.github.queue_job(ubuntu(1)).await, 202);
    assert_eq!(w.github.queue_job(k8s(2)).await, 202);
    assert_eq!(w.github.queue_job(ubuntu(3)).await, 202);
    assert_eq!(w.github.queued_jobs(), vec![1, 2, 3]);
    let job = w.job(UBUNTU_REPO, 1).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["labels"], json!(["ubuntu-latest"]));

    // Labels fit, scope does not: another organisation's runner.
    w.register("orgs/someone-else", "other-org", &["ubuntu-latest", "k8s"])
        .await;
    assert_eq!(w.acquire("other-org").await, (204, None));
    // Scope fits, a label lacks.
    w.register("orgs/Octocoders", "gpu", &["gpu"]).await;
    assert_eq!(w.acquire("gpu").await, (204, None));
    let gpu = w
        .github
        .runners()
        .into_iter()
        .find(|r| r.name == "gpu")
        .unwrap();
    assert_eq!((gpu.status.as_str(), gpu.busy), ("online", false));
    // Unknown runner.
    assert_eq!(w.acquire("nobody").await.0, 404);

    // An org runner whose labels fit (case-insensitively) takes the oldest: 1.
    let fast = w.github.add_runner_group("Octocoders", "fast");
    w.register_in("orgs/octocoders", "u1", &["Ubuntu-Latest"], fast)
        .await;
    assert_eq!(w.acquire("u1").await, (200, Some(1)));
    // A repository runner of the same repository skips 2 (k8s) and takes 3.
    w.register("repos/Octocoders/Hello-World", "u2", &["ubuntu-latest"])
        .await;
    assert_eq!(w.acquire("u2").await, (200, Some(3)));
    // A repository runner of another repository with the right labels takes nothing.
    w.register("repos/Octocoders/other", "u3", &["ubuntu-latest", "k8s"])
        .await;
    assert_eq!(w.acquire("u3").await, (204, None));
    // The k8s job's own repository runner.
    w.register(
        "repos/lineville/elastic-machines-testing",
        "k",
        &["self-hosted", "k8s"],
    )
    .await;
    assert_eq!(w.acquire("k").await, (200, Some(2)));
    assert!(w.github.queued_jobs().is_empty());
    // The runners whose labels or scope do not fit never got anything.
    assert_eq!(w.acquire("gpu").await, (204, None));
    assert_eq!(w.acquire("other-org").await, (204, None));
    assert_eq!(
        w.github.assignments(),
        vec![(1, "u1".to_string()), (3, "u2".into()), (2, "k".into())]
    );

    // Asking again while holding a job: the same job, no second webhook.
    assert_eq!(w.acquire("u1").await, (200, Some(1)));

    let job = w.job(UBUNTU_REPO, 1).await;
    assert_eq!(job["status"], "in_progress");
    assert_eq!(job["runner_name"], "u1");
    assert_eq!(job["runner_id"], u1_id(&w));
    assert_eq!(job["runner_group_id"], fast);
    assert_eq!(job["runner_group_name"], "fast");
    let u1 = w
        .github
        .runners()
        .into_iter()
        .find(|r| r.name == "u1")
        .unwrap();
    assert_eq!((u1.status.as_str(), u1.busy), ("online", true));

    // Completion: conclusion as told, the runner deregisters.
    assert_eq!(
        w.complete("u1", Some(json!({ "conclusion": "failure" })))
            .await,
        (200, json!({ "job_id": 1, "conclusion": "failure" }))
    );
    assert_eq!(w.complete("u2", None).await.0, 200);
    assert_eq!(w.complete("k", None).await.0, 200);
    let job = w.job(UBUNTU_REPO, 1).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["conclusion"], "failure");
    assert!(job["completed_at"].is_string());
    assert_eq!(w.job(K8S_REPO, 2).await["conclusion"], "success");
    let left: Vec<String> = w.github.runners().into_iter().map(|r| r.name).collect();
    assert_eq!(left, vec!["other-org", "gpu", "u3"]);
    // Gone: no second job for an ephemeral runner.
    assert_eq!(w.acquire("u1").await.0, 404);
    // A runner without a job cannot complete one; a bad conclusion is refused.
    assert_eq!(w.complete("gpu", None).await.0, 409);
    assert_eq!(
        w.complete("u3", Some(json!({ "conclusion": "great" })))
            .await
            .0,
        422
    );

    // Every webhook went out, signed, in order per job.
    let seen = w.seen();
    let of = |id: u64| -> Vec<(String, Option<String>)> {
        seen.iter()
            .filter(|(_, j, _)| *j == id)
            .map(|(a, _, r)| (a.clone(), r.clone()))
            .collect()
    };
    assert_eq!(
        of(1),
        vec![
            ("queued".to_string(), None),
            ("in_progress".into(), Some("u1".into())),
            ("completed".into(), Some("u1".into())),
        ]
    );
    assert_eq!(of(2).len(), 3);
    assert_eq!(of(3)[1], ("in_progress".to_string(), Some("u2".into())));
    assert_eq!(seen.len(), 9);
    let log = w.github.dispatch_log();
    assert!(
        log.iter()
            .all(|a| a.queued_at <= a.started_at
                && a.completed_at.is_some_and(|c| c >= a.started_at))
    );
    // The in_progress payload names the runner's id and group as GitHub does.
    let first = w
        .github
        .deliveries()
        .into_iter()
        .find(|d| d.action.as_deref() == Some("in_progress"))
        .unwrap();
    let p: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(p["workflow_job"]["id"], 1);
    assert_eq!(p["workflow_job"]["status"], "in_progress");
    assert_eq!(p["workflow_job"]["runner_group_name"], "fast");
    assert_eq!(p["workflow_job"]["runner_group_id"], fast);
    assert!(p["workflow_job"]["runner_id"].is_u64());
    assert!(p["workflow_job"]["started_at"].is_string());
    // The delivery log holds them too.
    let actions: Vec<Option<String>> = w
        .github
        .deliveries()
        .into_iter()
        .map(|d| d.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| a.as_deref() == Some("in_progress"))
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_acquires_never_share_a_job() {
    let w = Arc::new(World::new().await);
    for round in 0..10u64 {
        // One job, two runners asking at once: exactly one gets it.
        let id = 100 + round;
        w.github.queue_job(ubuntu(id)).await;
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        w.register("orgs/Octocoders", &a, &["ubuntu-latest"]).await;
        w.register("orgs/Octocoders", &b, &["ubuntu-latest"]).await;
        let (ra, rb) = tokio::join!(w.acquire(&a), w.acquire(&b));
        let mut got = [ra, rb];
        got.sort();
        assert_eq!(got, [(200, Some(id)), (204, None)], "round {round}");
    }
    // Many at once: 8 jobs, 24 runners.
    for id in 200..208 {
        w.github.queue_job(ubuntu(id)).await;
    }
    let mut names = Vec::new();
    for i in 0..24 {
        let n = format!("many{i}");
        w.register("orgs/Octocoders", &n, &["ubuntu-latest"]).await;
        names.push(n);
    }
    let tasks: Vec<_> = names
        .iter()
        .map(|n| {
            let (w, n) = (w.clone(), n.clone());
            tokio::spawn(async move { w.acquire(&n).await })
        })
        .collect();
    let mut jobs = Vec::new();
    let mut idle = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, Some(id)) => jobs.push(id),
            (204, None) => idle += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    jobs.sort();
    assert_eq!(jobs, (200..208).collect::<Vec<_>>());
    assert_eq!(idle, 16);
    let assigned: Vec<u64> = w.github.assignments().into_iter().map(|(j, _)| j).collect();
    let mut distinct = assigned.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        assigned.len(),
        "a job assigned twice: {assigned:?}"
    );
    // Exactly one in_progress webhook per job.
    let in_progress = w
        .seen()
        .iter()
        .filter(|(a, _, _)| a == "in_progress")
        .count();
    assert_eq!(in_progress, 18);
}

#[tokio::test]
async fn a_job_no_longer_queued_and_a_rerun_job() {
    let w = World::new().await;
    w.github.queue_job(ubuntu(1)).await;
    w.github.queue_job(ubuntu(2)).await;
    // Cancelled before any runner came: never dispatched.
    w.github.add_job(UBUNTU_REPO, 1, "completed");
    w.register("orgs/Octocoders", "r", &["ubuntu-latest"]).await;
    assert_eq!(w.acquire("r").await, (200, Some(2)));
    assert_eq!(
        w.complete("r", Some(json!({ "conclusion": "cancelled" })))
            .await
            .0,
        200
    );
    // Re-running job 2 queues a new job that a runner can take.
    let r = w
        .http
        .post(format!(
            "{}/repos/{UBUNTU_REPO}/actions/jobs/2/rerun",
            w.github.url()
        ))
        .bearer_auth(PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (new_id, attempt) = w.github.rerun_of(UBUNTU_REPO, 2).unwrap();
    assert_eq!(attempt, 2);
    assert_eq!(w.github.queued_jobs(), vec![new_id]);
    w.register("orgs/Octocoders", "r2", &["ubuntu-latest"])
        .await;
    assert_eq!(w.acquire("r2").await, (200, Some(new_id)));
}
