//! The webhook handler: raw request in, status + small JSON body out, and at most
//! one job message. [`route`] is pure (no I/O, benchmarked); [`WebhookService`]
//! adds the queue, the job-state seam and, with a [`SecretsSource`], a re-read
//! of the secrets when a signature does not match (a rotation while warm).

mod refresh_gate;
mod route;
mod service;
mod signature;

#[cfg(any(test, feature = "test-support"))]
pub use refresh_gate::MemoryRefreshGate;
pub use refresh_gate::RefreshGate;
pub use route::{
    Action, MAX_BODY_BYTES, NotServed, Outcome, QueuedJob, Routed, WebhookRequest, WebhookResponse,
    queued_job_message, route,
};
pub use service::{
    DEFAULT_SECRET_REFRESH, SecretRefs, SecretsSource, WebhookService, started_elsewhere,
};
pub use signature::{MIN_SECRET_CHARS, SignatureError, WebhookSecrets, sign, weak_secret};

#[cfg(test)]
mod public_tests;
#[cfg(test)]
mod tests;
