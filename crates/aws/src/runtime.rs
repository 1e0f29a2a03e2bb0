//! What every Lambda binary does at cold start: JSON logs, the environment, the
//! configuration document (from SSM or a file), validated with field-named errors.
//! (Warm Lambdas build it all again after a TTL: [`crate::reload`].)

use crate::ssm::SsmSecretStore;
/// The SDK configuration every `*_from_env` takes (re-exported: a function
/// crate needs no `aws-config` dependency of its own to name it).
pub use aws_config::SdkConfig;
use spotrunner_core::Config;
use spotrunner_core::config::SecretRef;
use spotrunner_core::ports::{SecretStore, resolve_secret};
use spotrunner_core::webhook::{DEFAULT_SECRET_REFRESH, WebhookSecrets};
use std::collections::BTreeMap;
use std::time::Duration;

/// Names the SSM parameter holding the configuration document (JSON).
pub const CONFIG_PARAMETER_ENV: &str = "SPOTRUNNER_CONFIG_PARAMETER";
/// Alternatively, a path to the document (JSON or TOML), for local runs.
pub const CONFIG_FILE_ENV: &str = "SPOTRUNNER_CONFIG_FILE";
/// sha256 of the document Terraform wrote to the parameter: a changed document
/// changes every function's environment, so Lambda starts new containers.
/// Only logged (it names the document a container started with).
pub const CONFIG_SHA256_ENV: &str = "SPOTRUNNER_CONFIG_SHA256";
/// The webhook's secret parameters (comma-separated SSM names, as in the
/// document's `ssm:` references): read in the same `GetParameters` call as the
/// configuration at cold start ([`load_webhook_config_and_secrets`]).
pub const WEBHOOK_SECRET_PARAMETERS_ENV: &str = "SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS";
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
/// `info`; no per-module directives: that would link a regex engine), and the
/// [`MetricsLayer`](crate::metrics::MetricsLayer) for `function` (the
/// `function` dimension), which sees every event with a `metric` field
/// whatever the level; each invocation flushes it
/// ([`crate::metrics::invocation`]).
pub fn init_tracing(function: &str) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(json_log_layer(std::io::stdout).with_filter(level))
        .with(crate::metrics::MetricsLayer::new(function).filtered())
        .init();
}

/// The JSON log format: the event's fields flattened next to `message` and
/// `level`, the current span once (`span`; no `spans` list repeating it), no
/// timestamp (CloudWatch stamps each line), no target.
pub fn json_log_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .without_time()
        .with_target(false)
        .with_writer(writer)
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
    accept(config)
}

/// Validate a loaded document for AWS; it names the `deployment` dimension.
fn accept(config: Config) -> Result<Config, StartupError> {
    config.validate_for_aws()?;
    crate::metrics::set_deployment(&config.deployment);
    Ok(config)
}

/// The webhook's cold start: the configuration and its webhook secrets. With
/// [`CONFIG_PARAMETER_ENV`] and [`WEBHOOK_SECRET_PARAMETERS_ENV`] set (as
/// Terraform does), one `GetParameters` call reads the document and the
/// secrets together; a secret the document references but that call did not
/// return (the variable and the document disagree) is then read on its own.
/// Otherwise: [`load_config_from`], then [`webhook_secrets`].
pub async fn load_webhook_config_and_secrets(
    sdk: &SdkConfig,
    env: &dyn EnvSource,
) -> Result<(Config, WebhookSecrets), StartupError> {
    let store = SsmSecretStore::new(sdk);
    let secret_names: Vec<String> = env
        .get(WEBHOOK_SECRET_PARAMETERS_ENV)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let config_name = env.get(CONFIG_PARAMETER_ENV).filter(|n| !n.is_empty());
    let (config, fetched) = match config_name {
        // GetParameters takes at most 10 names.
        Some(name) if !secret_names.is_empty() && secret_names.len() < 10 => {
            let mut names = vec![name.clone()];
            names.extend(secret_names);
            let mut values = store.get_many(&names).await.map_err(|e| {
                StartupError::Read(format!("SSM parameters {}: {e}", names.join(", ")))
            })?;
            let text = values
                .remove(&name)
                .ok_or_else(|| StartupError::Read(format!("SSM parameter {name}: not found")))?;
            (accept(Config::from_json(&text)?)?, values)
        }
        _ => (load_config_from(sdk, env).await?, BTreeMap::new()),
    };
    let secrets = webhook_secrets_with(&config, &store, &fetched).await?;
    Ok((config, secrets))
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
    webhook_secrets_with(config, store, &BTreeMap::new()).await
}

/// [`webhook_secrets`], taking `ssm:` values already read from `fetched`
/// (SSM name → value) and reading only the others.
async fn webhook_secrets_with(
    config: &Config,
    store: &dyn SecretStore,
    fetched: &BTreeMap<String, String>,
) -> Result<WebhookSecrets, StartupError> {
    let mut values = Vec::with_capacity(config.webhook.secrets.len());
    for r in &config.webhook.secrets {
        if let SecretRef::Ssm(name) = r
            && let Some(v) = fetched.get(name)
        {
            values.push(v.clone());
            continue;
        }
        if !fetched.is_empty() {
            tracing::info!(
                reference = %r,
                "webhook secret not among {WEBHOOK_SECRET_PARAMETERS_ENV}: read on its own"
            );
        }
        let v = resolve_secret(Some(store), r)
            .await
            .map_err(|e| StartupError::Secret {
                reference: r.to_string(),
                error: e.to_string(),
            })?;
        values.push(v);
    }
    // A short secret can be guessed, and then anyone can queue jobs: refused
    // at cold start (the value is never quoted).
    for (r, v) in config.webhook.secrets.iter().zip(&values) {
        if let Some(problem) = spotrunner_core::webhook::weak_secret(v) {
            return Err(StartupError::Secret {
                reference: r.to_string(),
                error: format!("the webhook secret {problem}"),
            });
        }
    }
    Ok(WebhookSecrets::new(&values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_names_its_span_once_and_its_fields_flat() {
        use tracing_subscriber::layer::SubscriberExt;
        let out = Captured::default();
        let writer = out.clone();
        let subscriber =
            tracing_subscriber::registry().with(json_log_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("invocation", request_id = "r-1");
            let _entered = span.enter();
            tracing::info!(github_message = "Bad credentials", "GitHub refused");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let line = text.lines().next().expect("one line");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["message"], "GitHub refused");
        assert_eq!(v["github_message"], "Bad credentials");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["span"]["name"], "invocation");
        assert!(v.get("spans").is_none(), "{line}");
        assert_eq!(line.matches("\"invocation\"").count(), 1, "{line}");
        assert_eq!(line.matches("\"r-1\"").count(), 1, "{line}");
        assert_eq!(line.matches("\"message\"").count(), 1, "{line}");
    }

    /// A store answering from a map (the values SSM would hold).
    struct Held(BTreeMap<String, String>);

    #[async_trait::async_trait]
    impl SecretStore for Held {
        async fn get_secret(
            &self,
            name: &str,
        ) -> Result<String, spotrunner_core::ports::PortError> {
            self.0
                .get(name)
                .cloned()
                .ok_or(spotrunner_core::ports::PortError::NotFound {
                    service: "ssm",
                    what: name.to_string(),
                })
        }
    }

    #[tokio::test]
    async fn a_short_webhook_secret_is_refused_at_cold_start_naming_its_reference() {
        let config = Config::from_toml(
            r#"
deployment = "sr"
allowed_owners = ["acme"]
[github]
auth = { type = "pat", token = "ssm:/sr/token" }
[webhook]
secrets = ["ssm:/sr/webhook/current", "ssm:/sr/webhook/previous"]
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 1
"#,
        )
        .unwrap();
        let strong = "0123456789abcdef0123456789abcdef".to_string();
        let held = |previous: &str| {
            Held(BTreeMap::from([
                ("/sr/webhook/current".to_string(), strong.clone()),
                ("/sr/webhook/previous".to_string(), previous.to_string()),
            ]))
        };
        let Err(err) = webhook_secrets(&config, &held("hunter2")).await else {
            panic!("a 7-character secret is refused");
        };
        let err = err.to_string();
        assert!(err.contains("ssm:/sr/webhook/previous"), "{err}");
        assert!(err.contains("7 characters"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = webhook_secrets(&config, &held(""))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is empty"), "{err}");
        assert_eq!(
            webhook_secrets(&config, &held(&strong))
                .await
                .unwrap()
                .len(),
            2
        );
    }

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
