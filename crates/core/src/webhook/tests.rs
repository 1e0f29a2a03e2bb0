use super::*;
use crate::config::Config;
use crate::fakes::{MemoryJobStates, MemoryQueue};
use crate::job::ObservedJobStatus;
use serde_json::json;
use std::sync::Arc;

pub(super) const SECRET: &str = "s3cret";

fn config() -> Config {
    Config::from_toml(
        r#"
deployment = "sr"
[github]
auth = { type = "pat", token = "env:GH_TOKEN" }
[webhook]
secrets = ["value:s3cret"]
[[pools]]
name = "k8s"
labels = ["k8s"]
max_runners = 3
"#,
    )
    .unwrap()
}

/// When the webhook receives the payloads below (built at fixed GitHub times):
/// seconds after `created_at`, whatever the machine's date (`crate::clock`).
pub(super) fn received() -> chrono::DateTime<chrono::Utc> {
    "2026-11-23T10:00:02Z".parse().unwrap()
}

fn job_body(action: &str, labels: &[&str], runner: Option<&str>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action,
        "workflow_job": {
            "id": 77, "run_id": 5, "run_attempt": 2, "labels": labels,
            "created_at": "2026-11-23T10:00:00Z", "runner_name": runner, "runner_id": 9,
            "conclusion": null, "started_at": "2026-11-23T10:01:00Z"
        },
        "repository": {
            "full_name": "o/r", "owner": { "login": "o", "type": "User" }, "private": true
        },
        "installation": { "id": 12 }
    }))
    .unwrap()
}

struct Harness {
    queue: Arc<MemoryQueue>,
    states: Arc<MemoryJobStates>,
    service: WebhookService,
}

fn harness() -> Harness {
    let queue = Arc::new(MemoryQueue::default());
    let states = Arc::new(MemoryJobStates::default());
    let service = WebhookService::new(
        Arc::new(config()),
        WebhookSecrets::new(&[SECRET]),
        queue.clone(),
        states.clone(),
    );
    Harness {
        queue,
        states,
        service,
    }
}

async fn post(h: &Harness, event: &str, body: &[u8]) -> WebhookResponse {
    let sig = sign(SECRET.as_bytes(), body);
    let req = WebhookRequest {
        method: "POST",
        event: Some(event),
        delivery: Some("d-1"),
        signature: Some(&sig),
        body,
    };
    h.service.handle(&req, received()).await
}

#[tokio::test]
async fn queued_job_is_enqueued_with_every_field() {
    let h = harness();
    let r = post(
        &h,
        "workflow_job",
        &job_body("queued", &["self-hosted", "K8S"], None),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body, json!({"queued": true, "job_id": 77, "pool": "k8s"}));
    let sent = h.queue.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!((m.job_id, m.run_id, m.run_attempt), (77, 5, 2));
    assert_eq!((m.repository.as_str(), m.owner.as_str()), ("o/r", "o"));
    assert_eq!(m.owner_type, "User");
    assert_eq!(m.installation_id, Some(12));
    assert_eq!(m.pool, "k8s");
    assert_eq!(m.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(m.queued_at, Some("2026-11-23T10:00:00Z".parse().unwrap()));
}

#[tokio::test]
async fn unmatched_other_actions_and_other_events_are_ignored() {
    let h = harness();
    let r = post(
        &h,
        "workflow_job",
        &job_body("queued", &["ubuntu-latest"], None),
    )
    .await;
    assert_eq!(r.status, 202);
    assert!(
        r.body["ignored"].as_str().unwrap().contains("no pool"),
        "{}",
        r.body
    );
    let r = post(&h, "workflow_job", &job_body("waiting", &["k8s"], None)).await;
    assert_eq!(
        (r.status, r.body["ignored"].as_str()),
        (202, Some("action waiting is not handled"))
    );
    let r = post(&h, "push", b"{}").await;
    assert_eq!(r.status, 202);
    let r = post(&h, "ping", br#"{"zen":"x"}"#).await;
    assert_eq!(r.status, 200);
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn in_progress_and_completed_are_recorded_not_enqueued() {
    let h = harness();
    let r = post(
        &h,
        "workflow_job",
        &job_body("in_progress", &["k8s"], Some("sr_k8s-1-0")),
    )
    .await;
    assert_eq!(r.status, 202);
    let r = post(
        &h,
        "workflow_job",
        &job_body("completed", &["other"], Some("sr_k8s-1-0")),
    )
    .await;
    assert_eq!(
        r.status, 202,
        "ours by runner name even if labels do not match"
    );
    let r = post(
        &h,
        "workflow_job",
        &job_body("completed", &["other"], Some("x")),
    )
    .await;
    assert!(r.body.get("ignored").is_some());
    let updates = h.states.updates.lock().unwrap().clone();
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0].status, ObservedJobStatus::InProgress);
    assert_eq!(updates[0].runner_name.as_deref(), Some("sr_k8s-1-0"));
    assert_eq!(updates[1].status, ObservedJobStatus::Completed);
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn bad_requests_get_4xx_and_enqueue_nothing() {
    let h = harness();
    let body = job_body("queued", &["k8s"], None);
    let sig = sign(SECRET.as_bytes(), &body);
    let mut req = WebhookRequest {
        method: "GET",
        event: Some("workflow_job"),
        delivery: None,
        signature: Some(&sig),
        body: &body,
    };
    assert_eq!(h.service.handle(&req, received()).await.status, 405);
    req.method = "POST";
    req.signature = None;
    assert_eq!(h.service.handle(&req, received()).await.status, 401);
    req.signature = Some(&sig);
    req.event = None;
    assert_eq!(h.service.handle(&req, received()).await.status, 400);
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(post(&h, "workflow_job", &big).await.status, 413);
    assert_eq!(post(&h, "workflow_job", b"not json").await.status, 400);
    assert_eq!(post(&h, "ping", b"not json").await.status, 400);
    let r = post(
        &h,
        "workflow_job",
        br#"{"action":"queued","workflow_job":{"id":"x"}}"#,
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("workflow_job.id"),
        "{}",
        r.body
    );
    assert_eq!(
        post(&h, "workflow_job", b"payload=%7B%7D").await.status,
        400
    );
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn queue_failure_is_a_5xx_for_the_redelivery_loop_to_find() {
    let h = harness();
    h.queue.set_failing(true);
    let r = post(&h, "workflow_job", &job_body("queued", &["k8s"], None)).await;
    assert_eq!(r.status, 503);
    h.queue.set_failing(false);
    let r = post(&h, "workflow_job", &job_body("queued", &["k8s"], None)).await;
    assert_eq!(r.status, 202);
}

#[test]
fn headers_are_picked_case_insensitively() {
    let headers = [
        ("X-GitHub-Event", "ping"),
        ("x-github-delivery", "abc"),
        ("X-HUB-SIGNATURE-256", "sha256=00"),
        ("x-hub-signature", "sha1=00"),
    ];
    let req = WebhookRequest::from_headers("POST", headers, b"{}");
    assert_eq!(req.event, Some("ping"));
    assert_eq!(req.delivery, Some("abc"));
    assert_eq!(req.signature, Some("sha256=00"));
}

/// Issue 10, defect 8: a `full_name` that is not `owner/name` of its owner
/// (`owner/../../etc` looped through "could not ask GitHub") is bad input.
#[tokio::test]
async fn a_repository_name_outside_githubs_grammar_is_refused_and_enqueues_nothing() {
    let h = harness();
    for (full_name, owner) in [("o/../../etc", "o"), ("evil/r", "o"), ("o/r/x", "o")] {
        let mut body: serde_json::Value =
            serde_json::from_slice(&job_body("queued", &["k8s"], None)).unwrap();
        body["repository"]["full_name"] = json!(full_name);
        body["repository"]["owner"]["login"] = json!(owner);
        let r = post(&h, "workflow_job", &serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(r.status, 400, "{full_name}: {}", r.body);
        assert!(
            r.body.to_string().contains("repository.full_name"),
            "{full_name}: {}",
            r.body
        );
    }
    assert!(h.queue.sent().is_empty());
    assert!(h.states.updates.lock().unwrap().is_empty());
}

/// Secrets as a store holds them now; counts the reads, can be made to fail.
#[derive(Default)]
struct FakeSecrets {
    values: std::sync::Mutex<Vec<String>>,
    reads: std::sync::atomic::AtomicUsize,
    failing: std::sync::atomic::AtomicBool,
}

impl FakeSecrets {
    fn holding(values: &[&str]) -> Arc<Self> {
        let s = Arc::new(Self::default());
        s.rotate(values);
        s
    }
    fn rotate(&self, values: &[&str]) {
        *self.values.lock().unwrap() = values.iter().map(|v| v.to_string()).collect();
    }
    fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl SecretsSource for FakeSecrets {
    async fn webhook_secrets(&self) -> Result<WebhookSecrets, crate::ports::PortError> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // A read takes a while: let concurrent requests run into the lock.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::ports::PortError::unavailable(
                "ssm",
                "connection reset",
            ));
        }
        Ok(WebhookSecrets::new(&self.values.lock().unwrap()))
    }
}

fn refreshing(source: Arc<FakeSecrets>, min_interval: std::time::Duration) -> Harness {
    let queue = Arc::new(MemoryQueue::default());
    let states = Arc::new(MemoryJobStates::default());
    let service = WebhookService::new(
        Arc::new(config()),
        WebhookSecrets::new(&[SECRET]),
        queue.clone(),
        states.clone(),
    )
    .with_secrets_source(source, min_interval);
    Harness {
        queue,
        states,
        service,
    }
}

async fn post_signed(h: &Harness, secret: &str, body: &[u8]) -> WebhookResponse {
    let sig = sign(secret.as_bytes(), body);
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: Some("d-2"),
        signature: Some(&sig),
        body,
    };
    h.service.handle(&req, received()).await
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_and_accepted_by_the_warm_service() {
    let source = FakeSecrets::holding(&[SECRET]);
    let h = refreshing(source.clone(), DEFAULT_SECRET_REFRESH);
    let body = job_body("queued", &["k8s"], None);
    assert_eq!(post_signed(&h, SECRET, &body).await.status, 202);
    assert_eq!(source.reads(), 0, "a matching signature reads nothing");

    source.rotate(&["n3w"]);
    let r = post_signed(&h, "n3w", &body).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(source.reads(), 1);
    assert_eq!(h.queue.sent().len(), 2);

    // The old secret is no longer configured: refused, without another read
    // (the last one is younger than the interval).
    assert_eq!(post_signed(&h, SECRET, &body).await.status, 401);
    assert_eq!(post_signed(&h, "wrong", &body).await.status, 401);
    assert_eq!(source.reads(), 1);
    // The new secret keeps working without reads.
    assert_eq!(post_signed(&h, "n3w", &body).await.status, 202);
    assert_eq!(source.reads(), 1);
    assert_eq!(h.queue.sent().len(), 3);
}

#[tokio::test]
async fn two_bad_requests_within_the_interval_read_once() {
    let source = FakeSecrets::holding(&[SECRET]);
    let h = refreshing(source.clone(), DEFAULT_SECRET_REFRESH);
    let body = job_body("queued", &["k8s"], None);
    assert_eq!(post_signed(&h, "wrong", &body).await.status, 401);
    assert_eq!(post_signed(&h, "wrong", &body).await.status, 401);
    assert_eq!(source.reads(), 1);
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn concurrent_mismatches_read_once() {
    let source = FakeSecrets::holding(&["n3w"]);
    let h = refreshing(source.clone(), DEFAULT_SECRET_REFRESH);
    let body = job_body("queued", &["k8s"], None);
    let rs = futures::future::join_all((0..8).map(|_| post_signed(&h, "n3w", &body))).await;
    assert!(rs.iter().all(|r| r.status == 202), "{rs:?}");
    assert_eq!(source.reads(), 1, "one read, the others used its result");
    assert_eq!(h.queue.sent().len(), 8);
}

#[tokio::test]
async fn a_missing_or_malformed_signature_reads_nothing() {
    let source = FakeSecrets::holding(&[SECRET]);
    let h = refreshing(source.clone(), std::time::Duration::ZERO);
    let body = job_body("queued", &["k8s"], None);
    let mut req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: None,
        signature: None,
        body: &body,
    };
    assert_eq!(h.service.handle(&req, received()).await.status, 401);
    req.signature = Some("sha256=xyz");
    assert_eq!(h.service.handle(&req, received()).await.status, 401);
    assert_eq!(source.reads(), 0);
}

#[tokio::test]
async fn a_failed_read_keeps_the_secrets_and_answers_401() {
    let source = FakeSecrets::holding(&["n3w"]);
    source
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Interval zero: every mismatch may read.
    let h = refreshing(source.clone(), std::time::Duration::ZERO);
    let body = job_body("queued", &["k8s"], None);
    assert_eq!(post_signed(&h, "n3w", &body).await.status, 401);
    assert_eq!(source.reads(), 1);
    assert_eq!(
        post_signed(&h, SECRET, &body).await.status,
        202,
        "the secrets held are kept"
    );
    source
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(post_signed(&h, "n3w", &body).await.status, 202);
    assert_eq!(source.reads(), 2);
    assert_eq!(post_signed(&h, "wrong", &body).await.status, 401);
    assert_eq!(
        source.reads(),
        3,
        "interval zero: the next mismatch reads again"
    );
}

#[tokio::test]
async fn without_a_source_a_mismatch_is_refused_as_before() {
    let h = harness();
    let body = job_body("queued", &["k8s"], None);
    assert_eq!(post_signed(&h, "n3w", &body).await.status, 401);
    assert!(h.queue.sent().is_empty());
}

#[tokio::test]
async fn secret_refs_resolve_each_call() {
    let dir = std::env::temp_dir().join(format!("spotrunner-webhook-refs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    std::fs::write(&path, "first\n").unwrap();
    let refs = SecretRefs::new(
        vec![
            crate::config::SecretRef::File(path.display().to_string()),
            crate::config::SecretRef::Value("prev".into()),
        ],
        None,
    );
    let body = b"{}";
    let s = refs.webhook_secrets().await.unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.verify(Some(&sign(b"first", body)), body), Ok(()));
    assert_eq!(s.verify(Some(&sign(b"prev", body)), body), Ok(()));
    std::fs::write(&path, "second").unwrap();
    let s = refs.webhook_secrets().await.unwrap();
    assert_eq!(s.verify(Some(&sign(b"second", body)), body), Ok(()));
    assert!(s.verify(Some(&sign(b"first", body)), body).is_err());
    let ssm = SecretRefs::new(vec![crate::config::SecretRef::Ssm("/x".into())], None);
    assert!(ssm.webhook_secrets().await.is_err(), "ssm: needs a store");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_route_names_its_metric_and_a_stable_reason() {
    let cfg = config();
    let secrets = WebhookSecrets::new(&[SECRET]);
    let now = received();
    let outcome = |method: &str, event: Option<&str>, body: &[u8], sig: Option<String>| {
        let req = WebhookRequest {
            method,
            event,
            delivery: Some("d-1"),
            signature: sig.as_deref(),
            body,
        };
        route(&cfg, &secrets, &req, now).outcome
    };
    let signed = |body: &[u8]| Some(sign(SECRET.as_bytes(), body));
    let queued = job_body("queued", &["k8s"], None);
    let cases: Vec<(Outcome, &str, Option<&str>)> = vec![
        (
            outcome("POST", Some("workflow_job"), &queued, signed(&queued)),
            "webhook_accepted",
            None,
        ),
        (
            outcome("GET", Some("workflow_job"), &queued, signed(&queued)),
            "webhook_refused",
            Some("method_not_allowed"),
        ),
        (
            outcome(
                "POST",
                Some("workflow_job"),
                &queued,
                Some(sign(b"other", &queued)),
            ),
            "webhook_refused",
            Some("bad_signature"),
        ),
        (
            outcome("POST", None, &queued, signed(&queued)),
            "webhook_refused",
            Some("missing_event"),
        ),
        (
            outcome("POST", Some("workflow_job"), b"{", signed(b"{")),
            "webhook_refused",
            Some("malformed"),
        ),
        (
            outcome("POST", Some("push"), b"{}", signed(b"{}")),
            "webhook_ignored",
            Some("not_workflow_job"),
        ),
        (
            outcome("POST", Some("ping"), b"{}", signed(b"{}")),
            "webhook_ignored",
            Some("ping"),
        ),
    ];
    let gpu = job_body("queued", &["gpu"], None);
    let waiting = job_body("waiting", &["k8s"], None);
    let running = job_body("in_progress", &["k8s"], None);
    let mut cases = cases;
    cases.extend([
        (
            outcome("POST", Some("workflow_job"), &gpu, signed(&gpu)),
            "webhook_ignored",
            Some("no_pool_matched"),
        ),
        (
            outcome("POST", Some("workflow_job"), &waiting, signed(&waiting)),
            "webhook_ignored",
            Some("action_not_handled"),
        ),
        (
            outcome("POST", Some("workflow_job"), &running, signed(&running)),
            "webhook_recorded",
            None,
        ),
    ]);
    for (i, (outcome, metric, reason)) in cases.into_iter().enumerate() {
        assert_eq!(
            (outcome.metric(), outcome.reason()),
            (metric, reason),
            "case {i}"
        );
    }
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        outcome("POST", Some("workflow_job"), &huge, signed(&huge)),
        Outcome::Refused("too_large")
    );
    let mut restricted = config();
    restricted.allowed_owners = vec!["someone-else".into()];
    let sig = signed(&queued);
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: None,
        signature: sig.as_deref(),
        body: &queued,
    };
    assert_eq!(
        route(&restricted, &secrets, &req, now).outcome,
        Outcome::Ignored("not_allowed")
    );
}

fn sized_config() -> Config {
    Config::from_toml(
        r#"
deployment = "sr"
[github]
auth = { type = "pat", token = "env:GH_TOKEN" }
[webhook]
secrets = ["value:s3cret"]
[[pools]]
name = "k8s"
labels = ["k8s"]
max_runners = 3
sizing = { cpu = [2, 16] }
[[pools]]
name = "plain"
labels = ["plain"]
max_runners = 3
"#,
    )
    .unwrap()
}

/// One signed `workflow_job` delivery to a fresh service on `cfg`: its
/// answer and the queue it filled.
pub(super) async fn post_with(cfg: Config, body: &[u8]) -> (WebhookResponse, Arc<MemoryQueue>) {
    let queue = Arc::new(MemoryQueue::default());
    let service = WebhookService::new(
        Arc::new(cfg),
        WebhookSecrets::new(&[SECRET]),
        queue.clone(),
        Arc::new(MemoryJobStates::default()),
    );
    let sig = sign(SECRET.as_bytes(), body);
    let req = WebhookRequest {
        method: "POST",
        event: Some("workflow_job"),
        delivery: Some("d-1"),
        signature: Some(&sig),
        body,
    };
    (service.handle(&req, received()).await, queue)
}

async fn post_sized(labels: &[&str]) -> (WebhookResponse, Arc<MemoryQueue>) {
    post_with(sized_config(), &job_body("queued", labels, None)).await
}

#[tokio::test]
async fn sizing_labels_within_bounds_are_queued_with_the_job_labels() {
    let (r, queue) = post_sized(&["self-hosted", "k8s", "spotrunner/cpu=8"]).await;
    assert_eq!(r.body, json!({"queued": true, "job_id": 77, "pool": "k8s"}));
    let sent = queue.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].labels,
        vec!["self-hosted", "k8s", "spotrunner/cpu=8"]
    );
}

#[tokio::test]
async fn sizing_out_of_bounds_or_malformed_is_ignored_with_its_reason() {
    for (labels, expect) in [
        (
            &["k8s", "spotrunner/cpu=32"][..],
            "label \"spotrunner/cpu=32\": 32 vCPUs is outside pool k8s's bounds: sizing.cpu = [2, 16]",
        ),
        (
            &["k8s", "spotrunner/cpu=lots"][..],
            "cpu must be a whole number",
        ),
        (&["k8s", "spotrunner/gpu=1"][..], "unknown sizing key"),
        (
            &["plain", "spotrunner/cpu=4"][..],
            "pool plain takes no sizing labels",
        ),
    ] {
        let (r, queue) = post_sized(labels).await;
        assert_eq!(r.status, 202);
        let why = r.body["ignored"].as_str().unwrap_or_default();
        assert!(why.contains(expect), "{labels:?}: {}", r.body);
        assert!(queue.sent().is_empty(), "{labels:?}: nothing enqueued");
    }
    let body = job_body("queued", &["k8s", "spotrunner/cpu=32"], None);
    let sig = sign(SECRET.as_bytes(), &body);
    let routed = route(
        &sized_config(),
        &WebhookSecrets::new(&[SECRET]),
        &WebhookRequest {
            method: "POST",
            event: Some("workflow_job"),
            delivery: None,
            signature: Some(&sig),
            body: &body,
        },
        received(),
    );
    assert_eq!(routed.outcome, Outcome::Ignored("sizing_refused"));
    assert_eq!(routed.action, Action::None);
}

/// Two warm containers of one function, reading the same source.
fn containers(source: &Arc<FakeSecrets>, gate: Option<Arc<dyn RefreshGate>>) -> (Harness, Harness) {
    let one = || {
        let mut h = refreshing(source.clone(), DEFAULT_SECRET_REFRESH);
        if let Some(g) = &gate {
            h.service = h.service.with_refresh_gate(g.clone());
        }
        h
    };
    (one(), one())
}

#[tokio::test]
async fn a_flood_of_bad_signatures_reads_the_secrets_once_across_containers() {
    let body = job_body("queued", &["k8s"], None);
    // Each container alone: one read per container.
    let alone = FakeSecrets::holding(&[SECRET]);
    let (a, b) = containers(&alone, None);
    for h in [&a, &b, &a, &b] {
        assert_eq!(post_signed(h, "wrong", &body).await.status, 401);
    }
    assert_eq!(
        alone.reads(),
        2,
        "without a shared gate every container reads"
    );

    // Sharing the function's gate: one read for the whole function.
    let shared = FakeSecrets::holding(&[SECRET]);
    let gate: Arc<dyn RefreshGate> = Arc::new(MemoryRefreshGate::default());
    let (a, b) = containers(&shared, Some(gate.clone()));
    for h in [&a, &b, &a, &b] {
        assert_eq!(post_signed(h, "wrong", &body).await.status, 401);
    }
    assert_eq!(shared.reads(), 1);
    assert!(a.queue.sent().is_empty() && b.queue.sent().is_empty());
}

#[tokio::test]
async fn the_shared_gate_opens_again_after_the_interval() {
    let gate = MemoryRefreshGate::default();
    let t0 = received();
    let interval = std::time::Duration::from_secs(30);
    assert!(gate.claim(t0, interval).await.unwrap());
    assert!(
        !gate
            .claim(t0 + chrono::Duration::seconds(29), interval)
            .await
            .unwrap()
    );
    assert!(
        gate.claim(t0 + chrono::Duration::seconds(30), interval)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_failing_gate_reads_nothing_and_refuses() {
    struct Broken;
    #[async_trait::async_trait]
    impl RefreshGate for Broken {
        async fn claim(
            &self,
            _: chrono::DateTime<chrono::Utc>,
            _: std::time::Duration,
        ) -> Result<bool, crate::ports::PortError> {
            Err(crate::ports::PortError::unavailable(
                "dynamodb",
                "throttled",
            ))
        }
    }
    let source = FakeSecrets::holding(&["n3w"]);
    let (a, _) = containers(&source, Some(Arc::new(Broken)));
    let body = job_body("queued", &["k8s"], None);
    assert_eq!(post_signed(&a, "n3w", &body).await.status, 401);
    assert_eq!(source.reads(), 0);
}

#[test]
fn a_weak_secret_is_named_without_its_value() {
    assert_eq!(weak_secret("").as_deref(), Some("is empty"));
    let short = weak_secret("s3cret-s3cret").unwrap();
    assert!(
        short.contains("13 characters") && short.contains("32"),
        "{short}"
    );
    assert!(!short.contains("s3cret"));
    assert_eq!(weak_secret(&"a".repeat(MIN_SECRET_CHARS)), None);
}

#[tokio::test]
async fn strong_only_refs_refuse_a_short_secret_and_the_service_keeps_its_own() {
    let strong = "0123456789abcdef0123456789abcdef";
    let short =
        SecretRefs::new(vec![crate::config::SecretRef::Value("short".into())], None).strong_only();
    let err = short.webhook_secrets().await.unwrap_err().to_string();
    assert!(err.contains("5 characters"), "{err}");
    assert!(
        err.contains("value:<redacted>"),
        "the value is never quoted: {err}"
    );
    let long =
        SecretRefs::new(vec![crate::config::SecretRef::Value(strong.into())], None).strong_only();
    assert_eq!(long.webhook_secrets().await.unwrap().len(), 1);
    // Locally (serve) the check is not asked for.
    let local = SecretRefs::new(vec![crate::config::SecretRef::Value("short".into())], None);
    assert!(local.webhook_secrets().await.is_ok());
}
