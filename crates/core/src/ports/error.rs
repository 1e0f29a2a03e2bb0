use std::time::Duration;

/// A failure of an adapter, classified by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// Worth retrying later (network, 5xx, throttling without a hint).
    #[error("{service} unavailable: {message}")]
    Unavailable {
        service: &'static str,
        message: String,
    },
    /// Told to wait before calling again.
    #[error("{service} throttled us; retry after {retry_after:?}")]
    Throttled {
        service: &'static str,
        retry_after: Duration,
    },
    /// The thing asked for does not exist.
    #[error("{service}: {what} not found")]
    NotFound { service: &'static str, what: String },
    /// A conditional write lost (already claimed, cap reached, ...).
    #[error("{service}: condition failed: {message}")]
    Conflict {
        service: &'static str,
        message: String,
    },
    /// Our request was wrong or not allowed; retrying will not help.
    #[error("{service} refused the request: {message}")]
    Rejected {
        service: &'static str,
        message: String,
    },
}

impl PortError {
    pub fn unavailable(service: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            service,
            message: e.to_string(),
        }
    }

    pub fn rejected(service: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Rejected {
            service,
            message: e.to_string(),
        }
    }

    /// Will the same call plausibly succeed later?
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Throttled { .. })
    }
}
