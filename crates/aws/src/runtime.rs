//! What every Lambda binary does at cold start: JSON logs, the environment, the
//! configuration document (from SSM or a file), validated with field-named errors.
//! (Warm Lambdas build it all again after a TTL: [`crate::reload`].)

use crate::ssm::SsmSecretStore;
/// The SDK configuration every `*_from_env` takes (re-exported: a function
/// crate needs no `aws-config` dependency of its own to name it).
pub use aws_config::SdkConfig;
use spotrunner_core::Config;
use spotrunner_core::ports::{SecretStore, resolve_secret};
use spotrunner_core::webhook::{DEFAULT_SECRET_REFRESH, WebhookSecrets};
use std::time::Duration;

/// Names the SSM parameter holding the configuration document (JSON).
pub const CONFIG_PARAMETER_ENV: &str = "SPOTRUNNER_CONFIG_PARAMETER";
/// Alternatively, a path to the document (JSON or TOML), for local runs.
pub const CONFIG_FILE_ENV: &str = "SPOTRUNNER_CONFIG_FILE";
/// sha256 of the document Terraform wrote to the parameter: a changed document
/// changes every function's environment, so Lambda starts new containers.
/// Only logged (it names the document a container started with).
pub const CONFIG_SHA256_ENV: &str = "SPOTRUNNER_CONFIG_SHA256";
/// Minimum seconds between two re-reads of the webhook secrets after a
/// signature mismatch (default 30).
pub const SECRET_REFRESH_ENV: &str = "SPOTRUNNER_SECRET_REFRESH_SECS";

/// A cold-start failure; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    #[error("environment variable {name}: {problem}")]
    BadEnv { name: &'static str, problem: String },
    #[error("neither {CONFIG_PARAMETER_ENV} nor {CONFIG_FILE_ENV} is set")]
    NoConfig,
    #[error("cannot read configuration: {0}")]
    Read(String),
    #[error(transparent)]
    Config(#[from] spotrunner_core::config::ConfigError),
    #[error("cannot read secret {reference}: {error}")]
    Secret { reference: String, error: String },
}

/// JSON logs on stdout, one level from `RUST_LOG` (`error` … `trace`, default
/// `info`; no per-module directives: that would link a regex engine).
pub fn init_tracing() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_current_span(true)
        .flatten_event(true)
        .without_time()
        .with_target(false)
        .init();
}

/// Where a Lambda reads its settings: the process environment in production, a
/// map in tests that replay what Terraform hands the functions.
pub trait EnvSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;

    /// A required, non-empty variable.
    fn require(&self, name: &'static str) -> Result<String, StartupError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or(StartupError::MissingEnv(name))
    }
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// A required environment variable.
pub fn env(name: &'static str) -> Result<String, StartupError> {
    ProcessEnv.require(name)
}

/// Load and validate the configuration named by the environment.
pub async fn load_config(sdk: &SdkConfig) -> Result<Config, StartupError> {
    load_config_from(sdk, &ProcessEnv).await
}

/// Load the configuration named by `env` and validate it for AWS (pools need
/// launch templates and instance types; secrets are references, never
/// `value:` literals).
pub async fn load_config_from(
    sdk: &SdkConfig,
    env: &dyn EnvSource,
) -> Result<Config, StartupError> {
    let config = if let Some(name) = env.get(CONFIG_PARAMETER_ENV) {
        let text = SsmSecretStore::new(sdk)
            .get_secret(&name)
            .await
            .map_err(|e| StartupError::Read(format!("SSM parameter {name}: {e}")))?;
        Config::from_json(&text)?
    } else if let Some(path) = env.get(CONFIG_FILE_ENV) {
        Config::from_path(std::path::Path::new(&path))?
    } else {
        return Err(StartupError::NoConfig);
    };
    config.validate_for_aws()?;
    Ok(config)
}

/// The sha256 of the configuration document Terraform deployed, if it says
/// (`-` otherwise), for the "ready" log line.
pub fn config_sha256(env: &dyn EnvSource) -> String {
    env.get(CONFIG_SHA256_ENV)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// How often a warm webhook may re-read its secrets after a mismatch:
/// [`SECRET_REFRESH_ENV`] seconds (`0` = on every mismatch), else 30 s.
pub fn secret_refresh_interval(env: &dyn EnvSource) -> Result<Duration, StartupError> {
    let Some(value) = env.get(SECRET_REFRESH_ENV).filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_SECRET_REFRESH);
    };
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| StartupError::BadEnv {
            name: SECRET_REFRESH_ENV,
            problem: format!("{value:?} is not a whole number of seconds"),
        })
}

/// Resolve the webhook secrets (at cold start, and when the configuration is
/// reloaded); values never logged.
pub async fn webhook_secrets(
    config: &Config,
    store: &dyn SecretStore,
) -> Result<WebhookSecrets, StartupError> {
    let mut values = Vec::with_capacity(config.webhook.secrets.len());
    for r in &config.webhook.secrets {
        let v = resolve_secret(Some(store), r)
            .await
            .map_err(|e| StartupError::Secret {
                reference: r.to_string(),
                error: e.to_string(),
            })?;
        values.push(v);
    }
    Ok(WebhookSecrets::new(&values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn secret_refresh_interval_from_the_environment() {
        let env = |v: &str| BTreeMap::from([(SECRET_REFRESH_ENV.to_string(), v.to_string())]);
        assert_eq!(
            secret_refresh_interval(&BTreeMap::new()).unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            secret_refresh_interval(&env("")).unwrap(),
            DEFAULT_SECRET_REFRESH
        );
        assert_eq!(secret_refresh_interval(&env("0")).unwrap(), Duration::ZERO);
        assert_eq!(
            secret_refresh_interval(&env("120")).unwrap(),
            Duration::from_secs(120)
        );
        let err = secret_refresh_interval(&env("-1")).unwrap_err().to_string();
        assert!(err.contains(SECRET_REFRESH_ENV), "{err}");
    }
}
