use super::signature::WebhookSecrets;
use crate::config::Config;
use crate::job::{
    JOB_MESSAGE_VERSION, JobMessage, JobStateUpdate, ObservedJobStatus, WorkflowJobEvent,
};
use crate::{matching, names, sizing};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// GitHub caps webhook payloads at 25 MiB.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// A webhook request as received: method, the headers we read, raw body bytes.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest<'a> {
    pub method: &'a str,
    /// `X-GitHub-Event`.
    pub event: Option<&'a str>,
    /// `X-GitHub-Delivery`.
    pub delivery: Option<&'a str>,
    /// `X-Hub-Signature-256`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

impl<'a> WebhookRequest<'a> {
    /// Pick the headers we read out of any (name, value) list, case-insensitively.
    pub fn from_headers<I>(method: &'a str, headers: I, body: &'a [u8]) -> Self
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut req = Self {
            method,
            body,
            ..Self::default()
        };
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("x-github-event") {
                req.event = Some(value);
            } else if name.eq_ignore_ascii_case("x-github-delivery") {
                req.delivery = Some(value);
            } else if name.eq_ignore_ascii_case("x-hub-signature-256") {
                req.signature = Some(value);
            }
        }
        req
    }
}

/// What the HTTP layer answers.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
}

impl WebhookResponse {
    fn new(status: u16, body: Value) -> Self {
        Self { status, body }
    }
    fn error(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, json!({ "error": message.into() }))
    }
    fn ignored(reason: impl Into<String>) -> Self {
        Self::new(202, json!({ "ignored": reason.into() }))
    }
}

/// What must happen beyond answering.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    /// Send this message to the jobs queue, then answer.
    Enqueue(JobMessage),
    /// Record what GitHub says about a job of ours, then answer.
    RecordJobState(JobStateUpdate),
}

/// What became of a request, for the metrics: `webhook_accepted` (a queued
/// job for a pool), `webhook_recorded` (a job state of ours), `webhook_ignored`
/// and `webhook_refused`, the last two with a short stable reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Recorded,
    /// `not_workflow_job`, `ping`, `not_allowed`, `no_pool_matched`,
    /// `public_repository`, `sizing_refused`, `action_not_handled`.
    Ignored(&'static str),
    /// `method_not_allowed`, `too_large`, `bad_signature`, `missing_event`,
    /// `form_encoded`, `malformed`.
    Refused(&'static str),
}

impl Outcome {
    /// The metric counting it.
    pub fn metric(self) -> &'static str {
        match self {
            Outcome::Accepted => "webhook_accepted",
            Outcome::Recorded => "webhook_recorded",
            Outcome::Ignored(_) => "webhook_ignored",
            Outcome::Refused(_) => "webhook_refused",
        }
    }

    /// The `reason` dimension (ignored and refused requests only).
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Outcome::Ignored(r) | Outcome::Refused(r) => Some(r),
            Outcome::Accepted | Outcome::Recorded => None,
        }
    }
}

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    pub response: WebhookResponse,
    pub action: Action,
    /// For logs: the job this request is about, if any.
    pub job_id: Option<u64>,
    /// For the metrics.
    pub outcome: Outcome,
}

impl Routed {
    /// An error answer, refused for `reason`.
    fn refused(status: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            response: WebhookResponse::error(status, message),
            action: Action::None,
            job_id: None,
            outcome: Outcome::Refused(reason),
        }
    }

    /// A 2xx answer with nothing to do, ignored for `reason`.
    fn ignored(response: WebhookResponse, reason: &'static str, job_id: Option<u64>) -> Self {
        Self {
            response,
            action: Action::None,
            job_id,
            outcome: Outcome::Ignored(reason),
        }
    }
}

/// Verify, parse and route one request. No I/O.
pub fn route(
    config: &Config,
    secrets: &WebhookSecrets,
    req: &WebhookRequest<'_>,
    now: DateTime<Utc>,
) -> Routed {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Routed::refused(
            405,
            "method_not_allowed",
            format!("method {} not allowed; use POST", req.method),
        );
    }
    if req.body.len() > MAX_BODY_BYTES {
        return Routed::refused(
            413,
            "too_large",
            "body exceeds GitHub's 25 MiB webhook limit",
        );
    }
    if let Err(e) = secrets.verify(req.signature, req.body) {
        tracing::warn!(delivery = req.delivery, reason = %e, "webhook signature refused");
        return Routed::refused(
            401,
            "bad_signature",
            "invalid or missing X-Hub-Signature-256",
        );
    }
    let Some(event) = req.event else {
        return Routed::refused(400, "missing_event", "X-GitHub-Event header is missing");
    };
    if req.body.starts_with(b"payload=") {
        return Routed::refused(
            400,
            "form_encoded",
            "form-encoded payload: set the webhook's content type to application/json",
        );
    }
    match event {
        "workflow_job" => route_workflow_job(config, req, now),
        other => {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(req.body) {
                return Routed::refused(400, "malformed", format!("body is not JSON: {e}"));
            }
            if other == "ping" {
                let pong = WebhookResponse::new(200, json!({ "ok": true, "message": "pong" }));
                Routed::ignored(pong, "ping", None)
            } else {
                let response = WebhookResponse::ignored(format!("event {other} is not handled"));
                Routed::ignored(response, "not_workflow_job", None)
            }
        }
    }
}

fn route_workflow_job(config: &Config, req: &WebhookRequest<'_>, now: DateTime<Utc>) -> Routed {
    let de = &mut serde_json::Deserializer::from_slice(req.body);
    let ev: WorkflowJobEvent = match serde_path_to_error::deserialize(de) {
        Ok(ev) => ev,
        Err(e) => {
            let msg = format!(
                "invalid workflow_job payload at {}: {}",
                e.path(),
                e.inner()
            );
            return Routed::refused(400, "malformed", msg);
        }
    };
    let job = &ev.workflow_job;
    let repo = &ev.repository;
    let ignored = |message: String, reason: &'static str| {
        Routed::ignored(WebhookResponse::ignored(message), reason, Some(job.id))
    };
    if let Some(problem) = names::repository_problem(&repo.full_name, &repo.owner.login) {
        return Routed::refused(400, "malformed", format!("repository.full_name: {problem}"));
    }
    if !config.allows(&repo.owner.login, &repo.full_name) {
        return ignored(
            format!("repository {} is not allowed", repo.full_name),
            "not_allowed",
        );
    }
    match ev.action.as_str() {
        "queued" => {
            let queued = QueuedJob {
                job_id: job.id,
                run_id: job.run_id,
                run_attempt: job.run_attempt,
                labels: &job.labels,
                created_at: job.created_at,
                repository: &repo.full_name,
                owner: &repo.owner.login,
                owner_type: &repo.owner.kind,
                public: repo.is_public(),
                installation_id: ev.installation.as_ref().map(|i| i.id),
                delivery_id: req.delivery,
                job_name: job.name.as_deref(),
            };
            // The repository is allowed (above): the labels can miss (no
            // pool, or sizing the pool refuses), or the pool refuses a
            // public repository.
            let msg = match queued_job_message(config, &queued, now) {
                Ok(msg) => msg,
                Err(e) => return ignored(e.message, e.reason),
            };
            Routed {
                response: WebhookResponse::new(
                    202,
                    json!({ "queued": true, "job_id": job.id, "pool": msg.pool }),
                ),
                action: Action::Enqueue(msg),
                job_id: Some(job.id),
                outcome: Outcome::Accepted,
            }
        }
        action @ ("in_progress" | "completed") => {
            let ours = job
                .runner_name
                .as_deref()
                .is_some_and(|r| names::is_ours(&config.deployment, r));
            if !ours && matching::match_pool(&config.pools, &job.labels).is_none() {
                return ignored(
                    format!("job {} is not served by any pool", job.id),
                    "no_pool_matched",
                );
            }
            let (status, at) = if action == "completed" {
                (ObservedJobStatus::Completed, job.completed_at)
            } else {
                (ObservedJobStatus::InProgress, job.started_at)
            };
            let update = JobStateUpdate {
                job_id: job.id,
                repository: repo.full_name.clone(),
                status,
                runner_name: job.runner_name.clone(),
                runner_id: job.runner_id,
                conclusion: job.conclusion.clone(),
                at: at.unwrap_or(now),
            };
            Routed {
                response: WebhookResponse::new(
                    202,
                    json!({ "recorded": action, "job_id": job.id }),
                ),
                action: Action::RecordJobState(update),
                job_id: Some(job.id),
                outcome: Outcome::Recorded,
            }
        }
        other => ignored(
            format!("action {other} is not handled"),
            "action_not_handled",
        ),
    }
}

/// What a queued job message is made of, wherever the job was heard of (the
/// webhook, or the missed-job sweep).
#[derive(Debug, Clone)]
pub struct QueuedJob<'a> {
    pub job_id: u64,
    pub run_id: u64,
    pub run_attempt: u32,
    pub labels: &'a [String],
    pub created_at: Option<DateTime<Utc>>,
    /// `owner/name`.
    pub repository: &'a str,
    pub owner: &'a str,
    /// `Organization` or `User`.
    pub owner_type: &'a str,
    /// A public repository (`repository.private` is false): only pools that
    /// allow public repositories serve it.
    pub public: bool,
    pub installation_id: Option<u64>,
    /// `X-GitHub-Delivery`, or what found the job (`sweep`).
    pub delivery_id: Option<&'a str>,
    /// `workflow_job.name`.
    pub job_name: Option<&'a str>,
}

/// Why a queued job gets no message: the metric's reason and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotServed {
    /// `not_allowed`, `no_pool_matched`, `public_repository`, `sizing_refused`.
    pub reason: &'static str,
    pub message: String,
}

/// The job message for a queued job, or why none of our pools takes it (the
/// repository is not allowed, no pool serves its labels, the repository is
/// public and the matched pool does not allow public repositories, or its
/// sizing labels break the matched pool's bounds).
pub fn queued_job_message(
    config: &Config,
    job: &QueuedJob<'_>,
    now: DateTime<Utc>,
) -> Result<JobMessage, NotServed> {
    if !config.allows(job.owner, job.repository) {
        return Err(NotServed {
            reason: "not_allowed",
            message: format!("repository {} is not allowed", job.repository),
        });
    }
    let Some(pool) = matching::match_pool(&config.pools, job.labels) else {
        return Err(NotServed {
            reason: "no_pool_matched",
            message: format!("no pool serves labels {:?}", job.labels),
        });
    };
    if job.public && !pool.allows_public_repositories(config.allow_public_repositories) {
        return Err(NotServed {
            reason: "public_repository",
            message: format!(
                "repository {} is public and pool {} does not allow public repositories \
                 (allow_public_repositories): anyone who can open a pull request there \
                 could run code on its runners",
                job.repository, pool.name
            ),
        });
    }
    if let Err(e) = sizing::decide(pool, job.labels, config.max_total_weight) {
        return Err(NotServed {
            reason: "sizing_refused",
            message: format!("job {} in pool {}: {e}", job.job_id, pool.name),
        });
    }
    Ok(JobMessage {
        version: JOB_MESSAGE_VERSION,
        job_id: job.job_id,
        run_id: job.run_id,
        run_attempt: job.run_attempt,
        repository: job.repository.to_string(),
        owner: job.owner.to_string(),
        owner_type: job.owner_type.to_string(),
        installation_id: job.installation_id,
        labels: job.labels.to_vec(),
        pool: pool.name.clone(),
        delivery_id: job.delivery_id.map(str::to_string),
        received_at: now,
        queued_at: job.created_at,
        launch_attempt: 0,
        deferrals: 0,
        job_name: job.job_name.map(str::to_string),
    })
}
