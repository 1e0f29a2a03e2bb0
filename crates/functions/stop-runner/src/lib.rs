//! stop-runner glue: an EventBridge event (as JSON) → the core handler. An event
//! stop-runner does not handle is logged and acknowledged (retrying it cannot
//! help); a failed step fails the invocation so that EventBridge delivers the
//! event again (every step is idempotent).

mod wiring;

pub use wiring::{StartError, handler_from_env};

use serde_json::{Value, json};
use spotrunner_core::ports::PortError;
use spotrunner_core::stop_runner::{StopEvent, StopOutcome, StopRunner};

pub struct Handler {
    pub stop_runner: StopRunner,
}

impl Handler {
    pub async fn handle(&self, event: Value) -> Result<Value, PortError> {
        let parsed = match StopEvent::from_eventbridge(&event) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, id = event.get("id").and_then(serde_json::Value::as_str), "event ignored");
                return Ok(json!({"outcome": "ignored", "reason": e.to_string()}));
            }
        };
        let outcome = self.stop_runner.handle(&parsed, chrono::Utc::now()).await?;
        Ok(match outcome {
            StopOutcome::Ignored { reason } => json!({"outcome": "ignored", "reason": reason}),
            StopOutcome::Ended {
                runner_name,
                job_id,
                job_state,
            } => json!({
                "outcome": "ended", "runner_name": runner_name, "job_id": job_id,
                "job_state": job_state.map(|s| s.as_str()),
            }),
            StopOutcome::AlreadyEnded { runner_name } => {
                json!({"outcome": "already_ended", "runner_name": runner_name})
            }
        })
    }
}
