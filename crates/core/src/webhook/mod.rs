//! The webhook handler: raw request in, status + small JSON body out, and at most
//! one job message. [`route`] is pure (no I/O, benchmarked); [`WebhookService`]
//! adds the queue and the job-state seam.

mod route;
mod service;
mod signature;

pub use route::{Action, MAX_BODY_BYTES, Routed, WebhookRequest, WebhookResponse, route};
pub use service::WebhookService;
pub use signature::{SignatureError, WebhookSecrets, sign};

#[cfg(test)]
mod tests;
