//! The runner side of SSM: the JIT config's SecureString parameter
//! ([`SsmRunnerParameters`]) and the bootstrap command ([`SsmCommands`]).
//! The command always carries `runnerSha256`: from the runner pin source when
//! there is one (`crate::runner_pin`), else the compiled-in checksum of the
//! default runner version (`runner_cache::DEFAULT_RUNNER_SHA256`), else empty
//! (bootstrap.sh then refuses the runner unless the pool allows unverified
//! ones).

use crate::error::{classify, code};
use crate::runtime::{EnvSource, StartupError};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{
    ParameterStringFilter, ParameterTier, ParameterType, ResourceTypeForTagging, Tag,
};
use chrono::Utc;
use spotrunner_core::ports::{
    BOOTSTRAP_SEND_TIMEOUT, BootstrapCommand, Commands, PortError, RunnerParameters, SendOutcome,
    tags,
};
use spotrunner_core::runner_cache::default_runner_sha256;

const SERVICE: &str = "ssm";
const PARAMETER_NOT_FOUND: &str = "ParameterNotFound";
/// The range the document's `maxRunTimeSecs` accepts (SSM's `timeoutSeconds`).
const MAX_RUN_TIME_SECS: std::ops::RangeInclusive<u64> = 1..=172_800;

/// `arn:<partition>:ec2:<region>:<account>:instance/`, for the instance-bound tag.
pub const INSTANCE_ARN_PREFIX_ENV: &str = "SPOTRUNNER_INSTANCE_ARN_PREFIX";
/// The KMS key (id, ARN or alias) for JIT parameters; unset: `aws/ssm`.
pub const PARAMETER_KMS_KEY_ENV: &str = "SPOTRUNNER_PARAMETER_KMS_KEY";

/// Why `prefix` is not `arn:<partition>:ec2:<region>:<account>:instance/`.
fn instance_arn_prefix_problem(prefix: &str) -> Option<String> {
    let parts: Vec<&str> = prefix.split(':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && parts[2] == "ec2"
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && parts[5] == "instance/";
    (!ok).then(|| {
        format!("{prefix:?} is not arn:<partition>:ec2:<region>:<12-digit account>:instance/")
    })
}

/// JIT config parameters: SecureString (under the configured KMS key, or
/// `aws/ssm`), overwritten on retry, tagged, bound to their instance, deleted.
#[derive(Clone, Debug)]
pub struct SsmRunnerParameters {
    client: Client,
    kms_key_id: Option<String>,
    instance_arn_prefix: Option<String>,
}

impl SsmRunnerParameters {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self::from_client(Client::new(sdk))
    }

    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            kms_key_id: None,
            instance_arn_prefix: None,
        }
    }

    /// Encrypt with this KMS key instead of the account's `aws/ssm` key.
    pub fn with_kms_key(mut self, key_id: impl Into<String>) -> Self {
        self.kms_key_id = Some(key_id.into());
        self
    }

    /// `arn:<partition>:ec2:<region>:<account>:instance/`: what
    /// [`RunnerParameters::bind_to_instance`] puts before the instance id in the
    /// `spotrunner:instance-arn` tag. Without it, binding is refused.
    pub fn with_instance_arn_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.instance_arn_prefix = Some(prefix.into());
        self
    }

    /// Parameters as the environment configures them:
    /// `SPOTRUNNER_INSTANCE_ARN_PREFIX` (see [`Self::with_instance_arn_prefix`];
    /// validated when set, required when `launches`: whoever launches runners
    /// binds their parameters) and `SPOTRUNNER_PARAMETER_KMS_KEY` (optional;
    /// empty or unset: `aws/ssm`).
    pub fn from_env(
        sdk: &SdkConfig,
        env: &dyn EnvSource,
        launches: bool,
    ) -> Result<Self, StartupError> {
        let mut params = Self::new(sdk);
        let prefix = if launches {
            Some(env.require(INSTANCE_ARN_PREFIX_ENV)?)
        } else {
            env.get(INSTANCE_ARN_PREFIX_ENV).filter(|p| !p.is_empty())
        };
        if let Some(prefix) = prefix {
            if let Some(problem) = instance_arn_prefix_problem(&prefix) {
                return Err(StartupError::BadEnv {
                    name: INSTANCE_ARN_PREFIX_ENV,
                    problem,
                });
            }
            params = params.with_instance_arn_prefix(prefix);
        }
        if let Some(key) = env.get(PARAMETER_KMS_KEY_ENV).filter(|k| !k.is_empty()) {
            params = params.with_kms_key(key);
        }
        Ok(params)
    }

    /// The KMS key parameters are encrypted with, if not `aws/ssm`.
    pub fn kms_key_id(&self) -> Option<&str> {
        self.kms_key_id.as_deref()
    }

    fn ssm_tags(tags: &[(String, String)]) -> Result<Vec<Tag>, PortError> {
        tags.iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| PortError::rejected(SERVICE, e))
            })
            .collect()
    }

    async fn add_tags(&self, name: &str, tags: &[(String, String)]) -> Result<(), PortError> {
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(Self::ssm_tags(tags)?))
            .send()
            .await
            .map_err(|e| {
                classify(
                    SERVICE,
                    &format!("parameter {name}"),
                    e,
                    &["InvalidResourceId", PARAMETER_NOT_FOUND],
                )
            })?;
        Ok(())
    }
}

#[async_trait]
impl RunnerParameters for SsmRunnerParameters {
    async fn put(
        &self,
        name: &str,
        value: &str,
        tags: &[(String, String)],
    ) -> Result<(), PortError> {
        // SSM refuses tags together with Overwrite: put first, then tag.
        // Intelligent-Tiering stays Standard (free) unless the value needs more
        // than 4 KB.
        self.client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .overwrite(true)
            .tier(ParameterTier::IntelligentTiering)
            .set_key_id(self.kms_key_id.clone())
            .send()
            .await
            // The SDK error never contains the value.
            .map_err(|e| classify(SERVICE, &format!("put parameter {name}"), e, &[]))?;
        if !tags.is_empty() {
            self.add_tags(name, tags).await?;
        }
        Ok(())
    }

    async fn exists(&self, name: &str) -> Result<bool, PortError> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(false)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found())
                    || code(&e) == Some(PARAMETER_NOT_FOUND) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify(SERVICE, &format!("parameter {name}"), e, &[])),
        }
    }

    async fn bind_to_instance(&self, name: &str, instance_id: &str) -> Result<(), PortError> {
        let prefix = self.instance_arn_prefix.as_deref().ok_or_else(|| {
            PortError::rejected(
                SERVICE,
                format!(
                    "cannot bind parameter {name} to {instance_id}: no instance ARN prefix \
                     ({INSTANCE_ARN_PREFIX_ENV}) configured"
                ),
            )
        })?;
        let arn = format!("{prefix}{instance_id}");
        self.add_tags(name, &[(tags::INSTANCE_ARN.to_string(), arn)])
            .await
    }

    async fn delete(&self, name: &str) -> Result<(), PortError> {
        match self.client.delete_parameter().name(name).send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found())
                    || code(&e) == Some(PARAMETER_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(
                SERVICE,
                &format!("delete parameter {name}"),
                e,
                &[],
            )),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let what = format!("parameters under {prefix}");
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("BeginsWith")
            .values(prefix)
            .build()
            .map_err(|e| PortError::rejected(SERVICE, e))?;
        let mut pages = self
            .client
            .describe_parameters()
            .parameter_filters(filter)
            .max_results(50)
            .into_paginator()
            .send();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(SERVICE, &what, e, &[]))?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name())
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_string),
            );
        }
        Ok(names)
    }
}

/// Sends the bootstrap document (`scripts/runner/ssm-document.yaml`) to one
/// instance. Its parameters are names and locations, never the JIT value.
#[derive(Clone, Debug)]
pub struct SsmCommands {
    client: Client,
    document_name: String,
    bucket: String,
    script_key: String,
    runner_version: String,
    region: Option<String>,
    /// When set, each command's runner version and checksum come from it
    /// (`crate::runner_pin`), not from `runner_version`.
    runner_pin: Option<crate::runner_pin::PinSource>,
}

impl SsmCommands {
    /// Take each command's runner version and SHA-256 from `source` (the
    /// runner cache's verified release).
    pub fn with_runner_pin(
        mut self,
        source: std::sync::Arc<dyn spotrunner_core::runner_cache::RunnerPinSource>,
    ) -> Self {
        self.runner_pin = Some(crate::runner_pin::PinSource(source));
        self
    }

    pub fn new(
        sdk: &SdkConfig,
        document_name: impl Into<String>,
        bucket: impl Into<String>,
        script_key: impl Into<String>,
        runner_version: impl Into<String>,
        region: Option<String>,
    ) -> Self {
        Self::from_client(
            Client::new(sdk),
            document_name,
            bucket,
            script_key,
            runner_version,
            region,
        )
    }

    pub fn from_client(
        client: Client,
        document_name: impl Into<String>,
        bucket: impl Into<String>,
        script_key: impl Into<String>,
        runner_version: impl Into<String>,
        region: Option<String>,
    ) -> Self {
        Self {
            client,
            document_name: document_name.into(),
            bucket: bucket.into(),
            script_key: script_key.into(),
            runner_version: runner_version.into(),
            region,
            runner_pin: None,
        }
    }

    /// The document's parameters for this command (names as in the document).
    pub fn parameters(&self, cmd: &BootstrapCommand) -> Vec<(&'static str, String)> {
        let max_run_time = cmd
            .max_run_time_secs
            .clamp(*MAX_RUN_TIME_SECS.start(), *MAX_RUN_TIME_SECS.end());
        vec![
            ("runnerName", cmd.runner_name.clone()),
            ("jitParameter", cmd.jit_parameter.clone()),
            ("bucket", self.bucket.clone()),
            ("scriptKey", self.script_key.clone()),
            ("runnerVersion", self.runner_version.clone()),
            ("maxRunTimeSecs", max_run_time.to_string()),
            (
                "startupScriptKey",
                cmd.startup_script_key.clone().unwrap_or_default(),
            ),
            ("region", self.region.clone().unwrap_or_default()),
            ("runnerArch", cmd.runner_arch.as_str().to_string()),
            // Without a pin source only the default version's compiled-in
            // checksum is known; `runner_pin::apply_pin` replaces it.
            (
                "runnerSha256",
                default_runner_sha256(&self.runner_version, cmd.runner_arch.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            ("runnerUser", cmd.runner_user.clone()),
            (
                "allowUnverifiedRunner",
                cmd.allow_unverified_runner.to_string(),
            ),
        ]
    }
}

#[async_trait]
impl Commands for SsmCommands {
    async fn send_bootstrap(&self, cmd: &BootstrapCommand) -> Result<SendOutcome, PortError> {
        let mut req = self
            .client
            .send_command()
            .instance_ids(&cmd.instance_id)
            .document_name(&self.document_name)
            .comment(bootstrap_comment(&cmd.runner_name));
        let mut params = self.parameters(cmd);
        if let Some(source) = &self.runner_pin {
            crate::runner_pin::apply_pin(&mut params, &source.0.runner_pin().await);
        }
        for (k, v) in params {
            req = req.parameters(k, vec![v]);
        }
        // SendCommand is not idempotent: the SDK's own retry of a call whose
        // answer was lost would start the runner command twice. One attempt,
        // started before `send_by` and bounded by the operation timeout, so a
        // step that resends later knows nothing of ours is still on its way
        // (the bootstrap step retries through `find_bootstrap` first).
        // `send_by` is a promise about real time (the step that may resend
        // waits in real time), so it is checked against the wall clock, not
        // the invocation's `now` (`spotrunner_core::clock`).
        if Utc::now() >= cmd.send_by {
            return Ok(SendOutcome::TooLate);
        }
        let once = aws_sdk_ssm::config::Builder::default()
            .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_ssm::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(BOOTSTRAP_SEND_TIMEOUT)
                    .build(),
            );
        match req.customize().config_override(once).send().await {
            Ok(out) => {
                let command_id = out
                    .command()
                    .and_then(|c| c.command_id())
                    .ok_or_else(|| {
                        PortError::unavailable(SERVICE, "SendCommand answered without a command id")
                    })?
                    .to_string();
                Ok(SendOutcome::Sent { command_id })
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_invalid_instance_id())
                    || code(&e) == Some("InvalidInstanceId") =>
            {
                Ok(SendOutcome::NotReady)
            }
            Err(e) => Err(classify(
                SERVICE,
                &format!("bootstrap {} on {}", cmd.runner_name, cmd.instance_id),
                e,
                &["InvalidDocument"],
            )),
        }
    }

    async fn find_bootstrap(
        &self,
        instance_id: &str,
        runner_name: &str,
    ) -> Result<Option<String>, PortError> {
        let ours = short_document_name(&self.document_name);
        let comment = bootstrap_comment(runner_name);
        let mut newest: Option<(aws_sdk_ssm::primitives::DateTime, String)> = None;
        let mut token = None;
        loop {
            let out = self
                .client
                .list_commands()
                .instance_id(instance_id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    classify(
                        SERVICE,
                        &format!("list commands of {instance_id}"),
                        e,
                        &["InvalidInstanceId"],
                    )
                })?;
            for c in out.commands() {
                let (Some(id), Some(doc)) = (c.command_id(), c.document_name()) else {
                    continue;
                };
                // Our document, for this runner (the comment names it), sent
                // to this instance (when the answer lists its targets).
                if short_document_name(doc) != ours
                    || c.comment() != Some(comment.as_str())
                    || (!c.instance_ids().is_empty()
                        && !c.instance_ids().iter().any(|i| i == instance_id))
                {
                    continue;
                }
                let at = c
                    .requested_date_time()
                    .copied()
                    .unwrap_or(aws_sdk_ssm::primitives::DateTime::from_secs(0));
                if newest.as_ref().is_none_or(|(t, _)| at > *t) {
                    newest = Some((at, id.to_string()));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(newest.map(|(_, id)| id)),
            }
        }
    }
}

/// The comment of a runner's bootstrap command (how `find_bootstrap` knows it).
fn bootstrap_comment(runner_name: &str) -> String {
    format!("spotrunner bootstrap {runner_name}")
}

/// A document's name whether given as a name or an ARN (`…:document/NAME`).
fn short_document_name(doc: &str) -> &str {
    doc.rsplit('/').next().unwrap_or(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotrunner_core::config::Architecture;

    #[test]
    fn instance_arn_prefixes() {
        assert_eq!(
            instance_arn_prefix_problem("arn:aws:ec2:us-east-1:123456789012:instance/"),
            None
        );
        assert_eq!(
            instance_arn_prefix_problem("arn:aws-cn:ec2:cn-north-1:123456789012:instance/"),
            None
        );
        for bad in [
            "",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
            "arn:aws:ec2:us-east-1:123456789012:instance",
            "arn:aws:ssm:us-east-1:123456789012:instance/",
            "arn:aws:ec2:us-east-1:1234:instance/",
            "arn:aws:ec2::123456789012:instance/",
        ] {
            assert!(instance_arn_prefix_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn from_env_requires_the_prefix_and_names_the_variable() {
        let sdk = crate::sdk::local("http://127.0.0.1:1").await;
        let mut env = std::collections::BTreeMap::new();
        let err = SsmRunnerParameters::from_env(&sdk, &env, true).unwrap_err();
        assert!(err.to_string().contains(INSTANCE_ARN_PREFIX_ENV), "{err}");
        // Operator commands never bind: the variable may be absent.
        assert!(SsmRunnerParameters::from_env(&sdk, &env, false).is_ok());
        env.insert(INSTANCE_ARN_PREFIX_ENV.to_string(), "i-".to_string());
        for launches in [true, false] {
            let err = SsmRunnerParameters::from_env(&sdk, &env, launches).unwrap_err();
            assert!(err.to_string().contains(INSTANCE_ARN_PREFIX_ENV), "{err}");
        }
        env.insert(
            INSTANCE_ARN_PREFIX_ENV.to_string(),
            "arn:aws:ec2:us-east-1:123456789012:instance/".to_string(),
        );
        let p = SsmRunnerParameters::from_env(&sdk, &env, true).unwrap();
        assert_eq!(p.kms_key_id(), None);
        env.insert(PARAMETER_KMS_KEY_ENV.to_string(), "alias/sr".to_string());
        let p = SsmRunnerParameters::from_env(&sdk, &env, true).unwrap();
        assert_eq!(p.kms_key_id(), Some("alias/sr"));
    }

    #[tokio::test]
    async fn parameters_match_the_document() {
        let sdk = crate::sdk::local("http://127.0.0.1:1").await;
        let c = SsmCommands::new(&sdk, "doc", "bucket", "bootstrap.sh", "2.317.0", None);
        let cmd = BootstrapCommand {
            instance_id: "i-1".into(),
            runner_name: "sr-1".into(),
            jit_parameter: "/sr/jit/sr-1".into(),
            max_run_time_secs: 999_999,
            startup_script_key: None,
            runner_arch: Architecture::X64,
            runner_user: "runner".into(),
            allow_unverified_runner: false,
            send_by: chrono::Utc::now() + chrono::Duration::hours(1),
        };
        let p = c.parameters(&cmd);
        let doc = include_str!("../../../scripts/runner/ssm-document.yaml");
        for (k, _) in &p {
            assert!(
                doc.contains(&format!("\n  {k}:\n")),
                "{k} not in the document"
            );
        }
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("maxRunTimeSecs"), "172800");
        assert_eq!(get("startupScriptKey"), "");
        assert_eq!(get("region"), "");
        assert_eq!(get("runnerArch"), "x64");
        assert_eq!(get("runnerUser"), "runner");
        assert_eq!(get("allowUnverifiedRunner"), "false");
        let arm = BootstrapCommand {
            runner_arch: Architecture::Arm64,
            ..cmd
        };
        let p = c.parameters(&arm);
        let arch = p.iter().find(|(n, _)| *n == "runnerArch").unwrap();
        assert_eq!(arch.1, "arm64");
        let root = BootstrapCommand {
            runner_user: "root".into(),
            allow_unverified_runner: true,
            ..arm.clone()
        };
        let p = c.parameters(&root);
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("runnerUser"), "root");
        assert_eq!(get("allowUnverifiedRunner"), "true");
        // The document allows exactly the values we send.
        for value in ["x64", "arm64", "true", "false"] {
            assert!(
                doc.contains(&format!("      - \"{value}\"\n")),
                "{value} not allowed"
            );
        }
    }
}
