//! GitHub REST client for spotrunner: the [`GitHubApi`] port on `reqwest`.
//!
//! - Auth: a GitHub App (RS256 JWT with a unique `jti`, installation access
//!   tokens cached per installation until 5 minutes before expiry, one mint per
//!   installation however many callers; installations looked up when the target
//!   names none) or a personal access token.
//! - GitHub Enterprise Server: set [`ClientConfig::api_url`] to
//!   `https://HOST/api/v3`.
//! - Rate limits: a 403/429 carrying `retry-after` or an exhausted
//!   `x-ratelimit-*` window, or a secondary-limit message, blocks every clone of
//!   the client until the reset; calls in the meantime answer
//!   [`PortError::Throttled`] without touching the network.
//! - A semaphore bounds calls in flight ([`ClientConfig::max_concurrent_calls`]).
//! - Recovery ports: [`HookDeliveries`] (a webhook's delivery log and
//!   redelivery, `deliveries.rs`) and [`QueuedJobSource`] (installations,
//!   repositories, workflow runs and jobs, `repos.rs`); each method is one page,
//!   one request (plus token minting and installation lookups, which are
//!   cached). The `x-ratelimit-*` headers of the last answer are kept for
//!   [`QueuedJobSource::rate_limit`].
//!
//! - Runner releases: [`GitHubReleases`] (`releases.rs`) implements
//!   `RunnerReleases` without credentials (public data), downloads capped at
//!   the declared size.
//!
//! [`GitHubApi`]: spotrunner_core::ports::GitHubApi
//! [`HookDeliveries`]: spotrunner_core::ports::HookDeliveries
//! [`QueuedJobSource`]: spotrunner_core::ports::QueuedJobSource
//! [`QueuedJobSource::rate_limit`]: spotrunner_core::ports::QueuedJobSource::rate_limit
//! [`PortError::Throttled`]: spotrunner_core::ports::PortError::Throttled

mod app;
mod client;
mod config;
mod deliveries;
mod from_config;
pub mod jwt;
pub mod ratelimit;
mod releases;
mod repos;

pub use app::{Account, AppCredentials, AppInfo, HookConfig, InstallationInfo, convert_manifest};
pub use client::{
    API_VERSION, ClientError, DEFAULT_RUNNER_GROUP_ID, GitHubClient, MAX_LABELS, PER_PAGE,
    RunnerGroupInfo, TOKEN_REFRESH_MARGIN, token_is_fresh, validate_jit_request,
};
pub use config::{
    Auth, ClientConfig, Clock, DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_USER_AGENT, OffsetClock,
    PUBLIC_API_URL, SystemClock,
};
pub use from_config::client_from_config;
pub use releases::{DOWNLOAD_MARGIN, GitHubReleases, RUNNER_REPOSITORY, ReleasesError};
