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

/// EC2's answer to a `ClientToken` seen before with different parameters.
///
/// Classed as `Unavailable` (transient), not `Rejected` and not `Conflict`:
/// the token says an earlier call with it may have started a VM, so a caller
/// must not give up what it holds for that launch (create-runner undoes its
/// reservation, parameter and registration on any non-transient error, and
/// `Conflict` is not transient) while that VM may be running. A retry keeps the
/// reservation; if the VM never turns up, the janitor's boot timeout ends the
/// attempt. The EC2 adapter looks the VM up by its tags first; this is the
/// fallback for any path that does not.
pub const IDEMPOTENT_PARAMETER_MISMATCH: &str = "IdempotentParameterMismatch";

/// The error code of an SDK error, if the service sent one.
pub fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// Map an SDK error: throttling → `Throttled`, network/timeouts/5xx → `Unavailable`,
/// `not_found` codes → `NotFound`, conditional failures → `Conflict`,
/// [`IDEMPOTENT_PARAMETER_MISMATCH`] → `Unavailable`, the rest → `Rejected`.
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
        Some(c)
            if c.starts_with("Internal")
                || c.contains("Unavailable")
                || c == IDEMPOTENT_PARAMETER_MISMATCH =>
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::operation::send_message::SendMessageError;

    fn service_error(code: &str) -> SdkError<SendMessageError, ()> {
        SdkError::service_error(
            SendMessageError::generic(ErrorMetadata::builder().code(code).message("m").build()),
            (),
        )
    }

    #[test]
    fn idempotent_parameter_mismatch_is_transient_never_rejected() {
        let e = classify(
            "ec2",
            "launch",
            service_error(IDEMPOTENT_PARAMETER_MISMATCH),
            &[],
        );
        assert!(matches!(e, PortError::Unavailable { .. }), "{e:?}");
        assert!(e.is_transient());
        assert!(e.to_string().contains(IDEMPOTENT_PARAMETER_MISMATCH), "{e}");
    }

    #[test]
    fn other_codes_keep_their_classes() {
        let e = classify("ec2", "launch", service_error("InvalidParameterValue"), &[]);
        assert!(matches!(e, PortError::Rejected { .. }), "{e:?}");
        let e = classify("ec2", "launch", service_error("RequestLimitExceeded"), &[]);
        assert!(matches!(e, PortError::Throttled { .. }), "{e:?}");
        let e = classify("ec2", "launch", service_error("InternalError"), &[]);
        assert!(e.is_transient(), "{e:?}");
    }
}
