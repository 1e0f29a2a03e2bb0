//! How to build a [`crate::GitHubClient`]: base URL, credentials, limits, clock.

use std::fmt;
use std::time::SystemTime;

/// `https://api.github.com`, the public GitHub REST API.
pub const PUBLIC_API_URL: &str = "https://api.github.com";
/// Default bound on HTTP calls in flight per client (all clones share it).
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 8;
/// Default `User-Agent` (GitHub refuses requests without one).
pub const DEFAULT_USER_AGENT: &str = concat!("spotrunner/", env!("CARGO_PKG_VERSION"));

/// Credentials for the REST API.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// A GitHub App: RS256 JWTs signed with the App's private key buy installation
    /// access tokens, which the client caches until shortly before they expire.
    App {
        /// The App's numeric id or its client id (GitHub accepts either as `iss`).
        app_id: String,
        /// PEM (PKCS#1 or PKCS#8) RSA private key of the App.
        private_key_pem: String,
    },
    /// A personal access token (classic or fine-grained), sent as a bearer token.
    Pat { token: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::App { app_id, .. } => write!(
                f,
                "Auth::App {{ app_id: {app_id:?}, private_key_pem: <redacted> }}"
            ),
            Auth::Pat { .. } => write!(f, "Auth::Pat {{ token: <redacted> }}"),
        }
    }
}

/// Everything [`crate::GitHubClient::new`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise
    /// Server. A trailing slash is ignored.
    pub api_url: String,
    pub auth: Auth,
    /// Upper bound on concurrent HTTP calls (0 is taken as 1).
    pub max_concurrent_calls: usize,
    pub user_agent: String,
}

impl ClientConfig {
    /// A config with the default concurrency bound and user agent.
    pub fn new(api_url: impl Into<String>, auth: Auth) -> Self {
        Self {
            api_url: api_url.into(),
            auth,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            user_agent: DEFAULT_USER_AGENT.to_string(),
        }
    }
}

/// The wall clock, injectable so that token expiry, JWT times and rate-limit
/// windows can be tested without sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock for tests: the system clock shifted by an adjustable offset.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_secs: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }
    /// Move the clock `secs` seconds forward (negative: backward).
    pub fn advance(&self, secs: i64) {
        self.offset_secs
            .fetch_add(secs, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> SystemTime {
        let off = self.offset_secs.load(std::sync::atomic::Ordering::SeqCst);
        let now = SystemTime::now();
        if off >= 0 {
            now + std::time::Duration::from_secs(off as u64)
        } else {
            now - std::time::Duration::from_secs(off.unsigned_abs())
        }
    }
}
