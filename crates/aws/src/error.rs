//! Classifying SDK errors into [`PortError`]s.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use spotrunner_core::ports::PortError;
use std::time::Duration;

const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
];

/// The error code of an SDK error, if the service sent one.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Map an SDK error: throttling → `Throttled`, network/timeouts/5xx → `Unavailable`,
/// `not_found` codes → `NotFound`, conditional failures → `Conflict`, the rest → `Rejected`.
pub fn classify<E, R>(
    service: &'static str,
    what: &str,
    e: SdkError<E, R>,
    not_found: &[&str],
) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = code(&e).map(str::to_string);
    let message = match &e {
        SdkError::ServiceError(s) => s
            .err()
            .message()
            .map(str::to_string)
            .unwrap_or_else(|| s.err().to_string()),
        other => aws_error_chain(other),
    };
    match code.as_deref() {
        Some(c) if THROTTLING.contains(&c) => PortError::Throttled {
            service,
            retry_after: Duration::from_secs(1),
        },
        Some(c) if not_found.contains(&c) => PortError::NotFound {
            service,
            what: what.to_string(),
        },
        Some("ConditionalCheckFailedException" | "TransactionCanceledException") => {
            PortError::Conflict { service, message }
        }
        Some(c) if c.starts_with("Internal") || c.contains("Unavailable") => {
            PortError::unavailable(service, format!("{what}: {c}: {message}"))
        }
        Some(c) => PortError::rejected(service, format!("{what}: {c}: {message}")),
        None => PortError::unavailable(service, format!("{what}: {message}")),
    }
}

fn aws_error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
