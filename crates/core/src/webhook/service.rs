use super::refresh_gate::RefreshGate;
use super::route::{Action, Routed, WebhookRequest, WebhookResponse, route};
use super::signature::{SignatureError, WebhookSecrets};
use crate::config::{Config, SecretRef};
use crate::ports::{JobQueue, JobStateSink, PortError, SecretStore, resolve_secret};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How often a warm webhook may re-read its secrets after a signature mismatch,
/// unless told otherwise ([`WebhookService::with_secrets_source`]).
pub const DEFAULT_SECRET_REFRESH: Duration = Duration::from_secs(30);

/// Where the webhook's secrets come from now (SSM, a file, the environment):
/// read again when a signature does not match, so a rotated secret is picked
/// up by a warm handler without a restart.
#[async_trait]
pub trait SecretsSource: Send + Sync {
    /// The accepted secrets, current first, then previous. Values are never logged.
    async fn webhook_secrets(&self) -> Result<WebhookSecrets, PortError>;
}

/// The configured `webhook.secrets` references, resolved on every call: `ssm:`
/// through `store`, `env:` / `file:` / `value:` locally.
pub struct SecretRefs {
    refs: Vec<SecretRef>,
    store: Option<Arc<dyn SecretStore>>,
    /// Refuse values shorter than [`super::MIN_SECRET_CHARS`] (the Lambda).
    strong: bool,
}

impl SecretRefs {
    pub fn new(refs: Vec<SecretRef>, store: Option<Arc<dyn SecretStore>>) -> Self {
        Self {
            refs,
            store,
            strong: false,
        }
    }

    /// A read that finds a weak secret ([`super::weak_secret`]) fails: the
    /// secrets held are kept.
    pub fn strong_only(mut self) -> Self {
        self.strong = true;
        self
    }
}

#[async_trait]
impl SecretsSource for SecretRefs {
    async fn webhook_secrets(&self) -> Result<WebhookSecrets, PortError> {
        let mut values = Vec::with_capacity(self.refs.len());
        for r in &self.refs {
            let value = resolve_secret(self.store.as_deref(), r).await?;
            if self.strong
                && let Some(problem) = super::weak_secret(&value)
            {
                return Err(PortError::rejected(
                    "secrets",
                    format!("webhook secret {r} {problem}"),
                ));
            }
            values.push(value);
        }
        Ok(WebhookSecrets::new(&values))
    }
}

/// Re-reading the secrets after a mismatch: at most once per `min_interval`,
/// one read at a time.
struct Refresh {
    source: Arc<dyn SecretsSource>,
    min_interval: Duration,
    /// When the last read started (`None`: never). Held across the read, so
    /// concurrent mismatches wait for it instead of reading again.
    last: futures::lock::Mutex<Option<Instant>>,
    /// Shared with the function's other containers (`None`: this one alone).
    gate: Option<Arc<dyn RefreshGate>>,
}

/// The webhook handler with its ports: route, then enqueue or record.
pub struct WebhookService {
    config: Arc<Config>,
    secrets: RwLock<Arc<WebhookSecrets>>,
    refresh: Option<Refresh>,
    queue: Arc<dyn JobQueue>,
    job_states: Arc<dyn JobStateSink>,
}

impl WebhookService {
    pub fn new(
        config: Arc<Config>,
        secrets: WebhookSecrets,
        queue: Arc<dyn JobQueue>,
        job_states: Arc<dyn JobStateSink>,
    ) -> Self {
        Self {
            config,
            secrets: RwLock::new(Arc::new(secrets)),
            refresh: None,
            queue,
            job_states,
        }
    }

    /// When a signature matches none of the secrets held, read them again from
    /// `source` (at most once per `min_interval`, one read at a time), swap them
    /// in and verify once more: a secret rotated while this handler was warm is
    /// accepted at once. A failed read is logged and the request refused as before.
    pub fn with_secrets_source(
        mut self,
        source: Arc<dyn SecretsSource>,
        min_interval: Duration,
    ) -> Self {
        self.refresh = Some(Refresh {
            source,
            min_interval,
            last: futures::lock::Mutex::new(None),
            gate: None,
        });
        self
    }

    /// Also ask `gate`, shared by every container of the function, before a
    /// read: at most one read per interval across all of them. A gate that
    /// fails or refuses means no read (the request is refused as before).
    /// Needs [`Self::with_secrets_source`] first.
    pub fn with_refresh_gate(mut self, gate: Arc<dyn RefreshGate>) -> Self {
        if let Some(refresh) = self.refresh.as_mut() {
            refresh.gate = Some(gate);
        }
        self
    }

    /// Handle one request received at `now` (the invocation's, `crate::clock`).
    /// 5xx only when our side fails; GitHub does not redeliver it by itself:
    /// the redelivery loop (`crate::recovery`) asks it to.
    pub async fn handle(&self, req: &WebhookRequest<'_>, now: DateTime<Utc>) -> WebhookResponse {
        let secrets = self.current_secrets();
        let mut routed = route(&self.config, &secrets, req, now);
        if self.mismatched(&routed, &secrets, req)
            && let Some(fresh) = self.refresh_secrets(&secrets, now).await
        {
            routed = route(&self.config, &fresh, req, now);
        }
        self.perform(req, routed).await
    }

    /// A 401 because the signature matched no secret (not a missing or malformed
    /// header: no secret can fix those), with a source to ask again.
    fn mismatched(&self, routed: &Routed, secrets: &WebhookSecrets, req: &WebhookRequest) -> bool {
        self.refresh.is_some()
            && routed.response.status == 401
            && secrets.verify(req.signature, req.body) == Err(SignatureError::Mismatch)
    }

    fn current_secrets(&self) -> Arc<WebhookSecrets> {
        self.secrets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fresh secrets to verify with, or `None` (no source, read too recently,
    /// or the read failed). `seen` are the secrets the request was refused with:
    /// if another request swapped newer ones in meanwhile, those are returned
    /// without a read.
    async fn refresh_secrets(
        &self,
        seen: &Arc<WebhookSecrets>,
        now: DateTime<Utc>,
    ) -> Option<Arc<WebhookSecrets>> {
        let refresh = self.refresh.as_ref()?;
        let mut last = refresh.last.lock().await;
        let current = self.current_secrets();
        if !Arc::ptr_eq(&current, seen) {
            return Some(current);
        }
        if last.is_some_and(|t| t.elapsed() < refresh.min_interval) {
            return None;
        }
        *last = Some(Instant::now());
        if let Some(gate) = &refresh.gate {
            match gate.claim(now, refresh.min_interval).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(
                        "webhook secrets were read by another container less than {} s ago; not reading again",
                        refresh.min_interval.as_secs()
                    );
                    return None;
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "webhook secrets refresh gate failed; keeping the secrets held"
                    );
                    return None;
                }
            }
        }
        match refresh.source.webhook_secrets().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
                tracing::info!(secrets = fresh.len(), "webhook secrets refreshed");
                Some(fresh)
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "webhook secrets refresh failed; keeping the secrets held"
                );
                None
            }
        }
    }

    async fn perform(&self, req: &WebhookRequest<'_>, routed: Routed) -> WebhookResponse {
        let delivery = req.delivery.unwrap_or("-");
        let event = req.event.unwrap_or("-");
        let job_id = routed.job_id;
        let (result, pool) = match &routed.action {
            Action::None => (Ok(()), None),
            Action::Enqueue(msg) => (self.queue.send_job(msg).await, Some(msg.pool.as_str())),
            Action::RecordJobState(update) => {
                let mut result = self.job_states.record_job_state(update).await;
                if result.is_ok()
                    && let Some(task) = started_elsewhere(&self.config.deployment, update)
                {
                    result = self.queue.send_task(&task, std::time::Duration::ZERO).await;
                }
                (result, None)
            }
        };
        match result {
            Ok(()) => {
                // One line per request, counted by its metric (`pool` for an
                // accepted job, `reason` for an ignored or refused request).
                tracing::info!(
                    delivery,
                    event,
                    job_id,
                    status = routed.response.status,
                    outcome = %routed.response.body,
                    metric = routed.outcome.metric(),
                    pool,
                    reason = routed.outcome.reason(),
                    "webhook handled"
                );
                routed.response
            }
            Err(e) => {
                tracing::error!(
                    delivery,
                    event,
                    job_id,
                    error = %e,
                    metric = "webhook_failed",
                    pool,
                    "webhook failed on our side"
                );
                WebhookResponse {
                    status: 503,
                    body: json!({ "error": format!("temporarily unable to accept the job: {e}") }),
                }
            }
        }
    }
}

/// An `in_progress` on a runner of ours launched for another job (or a hot
/// one, job 0): create-runner binds them and looks after the other job
/// (`create_runner`'s `started` task, `crate::hot`).
pub fn started_elsewhere(
    deployment: &str,
    update: &crate::job::JobStateUpdate,
) -> Option<crate::pool_task::TaskMessage> {
    use crate::pool_task::{PoolTask, TaskMessage};
    if update.status != crate::job::ObservedJobStatus::InProgress {
        return None;
    }
    let runner = update.runner_name.as_deref()?;
    let parsed = crate::names::parse_runner_name(runner)?;
    (parsed.deployment == deployment && parsed.job_id != update.job_id).then(|| {
        TaskMessage::new(PoolTask::Started {
            job_id: update.job_id,
            runner_name: runner.to_string(),
            tries: 0,
        })
    })
}
