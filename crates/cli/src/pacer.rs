//! The dlq-mover's rate limit on tokio's clock (as the Lambda's pacer).

use spotrunner_core::dlq_mover::{PaceSchedule, Pacer};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Waits so that each batch starts only after the earlier batches' budgets.
#[derive(Default)]
pub struct TokioPacer {
    schedule: Mutex<PaceSchedule>,
}

#[async_trait::async_trait]
impl Pacer for TokioPacer {
    async fn pace(&self, budget: Duration) {
        let wait = self
            .schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(Instant::now(), budget);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
