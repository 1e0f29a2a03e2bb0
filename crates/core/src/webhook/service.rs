use super::route::{Action, WebhookRequest, WebhookResponse, route};
use super::signature::WebhookSecrets;
use crate::config::Config;
use crate::ports::{JobQueue, JobStateSink};
use chrono::Utc;
use serde_json::json;
use std::sync::Arc;

/// The webhook handler with its ports: route, then enqueue or record.
pub struct WebhookService {
    config: Arc<Config>,
    secrets: WebhookSecrets,
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
            secrets,
            queue,
            job_states,
        }
    }

    /// Handle one request. 5xx only when our side fails, so GitHub can redeliver.
    pub async fn handle(&self, req: &WebhookRequest<'_>) -> WebhookResponse {
        let routed = route(&self.config, &self.secrets, req, Utc::now());
        let delivery = req.delivery.unwrap_or("-");
        let event = req.event.unwrap_or("-");
        let job_id = routed.job_id;
        let result = match &routed.action {
            Action::None => Ok(()),
            Action::Enqueue(msg) => self.queue.send_job(msg).await,
            Action::RecordJobState(update) => self.job_states.record_job_state(update).await,
        };
        match result {
            Ok(()) => {
                tracing::info!(
                    delivery,
                    event,
                    job_id,
                    status = routed.response.status,
                    outcome = %routed.response.body,
                    "webhook handled"
                );
                routed.response
            }
            Err(e) => {
                tracing::error!(delivery, event, job_id, error = %e, "webhook failed on our side");
                WebhookResponse {
                    status: 503,
                    body: json!({ "error": format!("temporarily unable to accept the job: {e}") }),
                }
            }
        }
    }
}
