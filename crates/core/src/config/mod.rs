//! The one typed configuration document: global settings plus a list of pools.
//!
//! Loaded from JSON or TOML ([`Config::from_json`], [`Config::from_toml`],
//! [`Config::from_path`]); every error names the field and the rule it broke.

mod app_id;
mod arch;
mod hot;
mod local;
mod recovery;
mod runner_cache;
mod runner_user;
mod secret_ref;
mod sizing;
mod spot;
mod validate;

pub use app_id::AppId;
pub use arch::Architecture;
pub use hot::{HotPool, HotWindow};
pub use local::LocalConfig;
pub use recovery::{RecoveryConfig, RedeliveryConfig, SweepConfig};
pub use runner_cache::RunnerCacheConfig;
pub use runner_user::{DEFAULT_RUNNER_USER, ROOT_USER, runner_user_problem};
pub use secret_ref::SecretRef;
pub use sizing::{SizingBounds, family_of, family_problem};
pub use spot::SpotPolicy;
pub use validate::{ConfigError, FieldError};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// `allowed_owners = ["*"]`: every owner the credentials reach.
pub const ANY_OWNER: &str = "*";

/// The whole configuration document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prefix of every name, tag and runner this deployment owns (`[a-z][a-z0-9-]*`, ≤ 20).
    pub deployment: String,
    pub github: GitHubConfig,
    pub webhook: WebhookConfig,
    /// Organisations / users whose jobs we serve; `["*"]` means any owner
    /// the credentials reach. Empty also means any, but only locally: on AWS
    /// ([`Config::validate_for_aws`]) it is refused unless
    /// `allowed_repositories` names the repositories.
    #[serde(default)]
    pub allowed_owners: Vec<String>,
    /// `owner/repo` names we serve; empty means any repository of an allowed owner.
    #[serde(default)]
    pub allowed_repositories: Vec<String>,
    /// Global weighted quota: sum of `weight` over live runners of all pools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_weight: Option<u32>,
    /// Serve jobs of public repositories (off by default: anyone who can open
    /// a pull request could run code on our runners). A pool may override it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_public_repositories: bool,
    /// Version of the GitHub Actions runner the VMs run: pinned (`2.329.0`)
    /// or `"latest"` (the newest release the runner cache verified).
    #[serde(default = "defaults::runner_version")]
    pub runner_version: String,
    pub pools: Vec<Pool>,
    /// The redelivery loop and the missed-job sweep (both on by default).
    #[serde(default)]
    pub recovery: RecoveryConfig,
    /// Settings of the embedded local mode (`spotrunner serve`); the Lambdas ignore them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// REST API base: `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server.
    #[serde(default = "defaults::api_url")]
    pub api_url: String,
    pub auth: GitHubAuth,
}

/// How spotrunner authenticates to GitHub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum GitHubAuth {
    /// A GitHub App (preferred): installation tokens are minted and cached.
    /// `app_id`: the number, or a reference (`ssm:/sr/github/app-id`).
    App {
        app_id: AppId,
        private_key: SecretRef,
    },
    /// A personal access token.
    Pat { token: SecretRef },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The current secret first, then (during rotation) the previous one. One or two.
    pub secrets: Vec<SecretRef>,
}

/// Where runners of a pool come from: a "runner template".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    /// Labels this pool serves; `self-hosted` is implicit.
    pub labels: Vec<String>,
    /// EC2 launch template name (required on AWS, unused locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_template: Option<String>,
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Explicit architecture; unset, [`Pool::arch`] derives it from `instance_types`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub capacity_type: CapacityType,
    /// Spot pools only: launch on-demand when spot has no capacity.
    #[serde(default)]
    pub on_demand_fallback: bool,
    pub max_runners: u32,
    /// Cost weight of one runner against the global `max_total_weight`.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
    #[serde(default = "defaults::runner_group")]
    pub runner_group: String,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "defaults::boot_timeout")]
    pub boot_timeout_secs: u64,
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout_secs: u64,
    #[serde(default = "defaults::max_run_time")]
    pub max_run_time_secs: u64,
    /// Shell script run on the VM before the runner starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_script: Option<String>,
    /// Linux user the runner, and so every job step, runs as on the VM
    /// (`runner_user.rs`): created if missing, with passwordless sudo as on
    /// GitHub's hosted runners; `"root"` runs jobs as root.
    #[serde(default = "defaults::runner_user")]
    pub runner_user: String,
    /// Install the runner even when no verified SHA-256 is known for it
    /// (`runner_user.rs`); only with a pinned `runner_version`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unverified_runner: bool,
    /// Ask GitHub whether the job is still queued before launching.
    #[serde(default)]
    pub check_job_queued: bool,
    /// What happens when runners end before their job starts.
    #[serde(default)]
    pub relaunch: RelaunchPolicy,
    /// Re-runs of interrupted jobs and the spot circuit breaker.
    #[serde(default)]
    pub spot: SpotPolicy,
    /// Idle runners kept booted and registered before any job (`crate::hot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hot: Option<HotPool>,
    /// Bounds of per-job sizing (`spotrunner/cpu=8` …, `crate::sizing`);
    /// unset: the pool refuses sizing labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizingBounds>,
    /// Serve jobs of public repositories; unset: the global
    /// `allow_public_repositories`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_public_repositories: Option<bool>,
}

impl Pool {
    /// The explicit architecture, else that of the first instance type (a
    /// mix is refused by validation), else x64 (local pools).
    pub fn arch(&self) -> Architecture {
        self.architecture.unwrap_or_else(|| {
            self.instance_types
                .first()
                .map_or(Architecture::X64, |t| Architecture::of_instance_type(t))
        })
    }

    /// Does this pool take jobs of public repositories (its own setting,
    /// else the global one)?
    pub fn allows_public_repositories(&self, global: bool) -> bool {
        self.allow_public_repositories.unwrap_or(global)
    }
}

/// Bounds on relaunching a job whose runner ended before the job started, and
/// the pool's circuit breaker (`crate::circuit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaunchPolicy {
    /// Launches per job, the first included; then the job is `failed`.
    pub max_launches: u32,
    /// Delay before relaunch n (n = 1, 2, …): `delay_secs × 2^(n-1)`.
    pub delay_secs: u64,
    /// Start failures in a row (within the window) that pause the pool; 0: never.
    pub circuit_failures: u32,
    pub circuit_window_secs: u64,
    /// How long the pool stays paused before one probe launch; the probe's
    /// window is as long.
    pub circuit_cooldown_secs: u64,
}

impl Default for RelaunchPolicy {
    fn default() -> Self {
        Self {
            max_launches: 3,
            delay_secs: 30,
            circuit_failures: 5,
            circuit_window_secs: 900,
            circuit_cooldown_secs: 600,
        }
    }
}

impl RelaunchPolicy {
    pub fn probe_window_secs(&self) -> u64 {
        self.circuit_cooldown_secs
    }

    /// The delay before launch attempt `attempt` (1 = the first relaunch).
    pub fn delay_before(&self, attempt: u32) -> std::time::Duration {
        let n = attempt.saturating_sub(1).min(10);
        std::time::Duration::from_secs(self.delay_secs.saturating_mul(1 << n).min(900))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityType {
    #[default]
    Spot,
    OnDemand,
}

/// Where a pool's runners register: the organisation, or the job's repository.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    #[default]
    Org,
    Repo,
}

pub(crate) mod defaults {
    /// (boot timeout, idle timeout, max run time) of a pool that sets none.
    pub fn pool_timers() -> (u64, u64, u64) {
        (boot_timeout(), idle_timeout(), max_run_time())
    }
    pub fn api_url() -> String {
        "https://api.github.com".into()
    }
    pub fn runner_version() -> String {
        crate::runner_cache::DEFAULT_RUNNER_VERSION.into()
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn runner_group() -> String {
        "Default".into()
    }
    pub fn runner_user() -> String {
        super::runner_user::DEFAULT_RUNNER_USER.into()
    }
    pub fn boot_timeout() -> u64 {
        300
    }
    pub fn idle_timeout() -> u64 {
        900
    }
    pub fn max_run_time() -> u64 {
        6 * 3600
    }
}

impl Config {
    /// Parse and validate a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(de)
            .map_err(|e| ConfigError::parse(e.path().to_string(), e.into_inner().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Parse and validate a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::parse(path, inner.message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Parse by file extension (`.toml`, else JSON).
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::parse(
                String::new(),
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml(&text),
            _ => Self::from_json(&text),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// `allowed_owners = ["*"]`: any owner, said explicitly.
    pub fn allows_any_owner(&self) -> bool {
        self.allowed_owners.iter().any(|o| o == ANY_OWNER)
    }

    /// The owners named in `allowed_owners` (without `"*"`).
    pub fn named_owners(&self) -> impl Iterator<Item = &String> {
        self.allowed_owners.iter().filter(|o| *o != ANY_OWNER)
    }

    /// Is a job of this repository (`owner/name`) ours to serve?
    pub fn allows(&self, owner: &str, repository_full_name: &str) -> bool {
        let owner_ok = self.allowed_owners.is_empty()
            || self.allows_any_owner()
            || self
                .allowed_owners
                .iter()
                .any(|o| o.eq_ignore_ascii_case(owner));
        let repo_ok = self.allowed_repositories.is_empty()
            || self
                .allowed_repositories
                .iter()
                .any(|r| r.eq_ignore_ascii_case(repository_full_name));
        owner_ok && repo_ok
    }
}

#[cfg(test)]
mod owners_tests;
#[cfg(test)]
mod tests;
