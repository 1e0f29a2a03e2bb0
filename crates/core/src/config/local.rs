//! The `local` section: settings of the embedded local mode (`spotrunner serve`),
//! ignored by the Lambdas.

use serde::{Deserialize, Serialize};

/// How `spotrunner serve` runs on one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// HTTP listen address (`--listen` wins).
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// What a local "instance" runs as its runner, instead of `run.sh` of an
    /// installed actions runner: split on whitespace; gets its JIT config in
    /// `ACTIONS_RUNNER_INPUT_JITCONFIG` (as the actions runner reads it), never
    /// on its command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_command: Option<String>,
    /// An installed actions runner (`run.sh` inside), when `runner_command` is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_dir: Option<String>,
    /// When `serve` runs as root: each runner runs as its own unprivileged
    /// account `<runner_user>-<n>` (created when missing), default
    /// `spotrunner-runner`; `"root"` runs them as root, like `serve` (no
    /// isolation). A `serve` that is not root runs runners as its own user
    /// and refuses any other name. See `spotrunner_local::isolation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_user: Option<String>,
    /// How long a received queue message stays hidden (SQS visibility timeout).
    #[serde(default = "defaults::visibility_timeout")]
    pub visibility_timeout_secs: u64,
    /// How long create-runner owns a claimed job (shorter than the visibility
    /// timeout, so a delivery after a crash resumes the claim).
    #[serde(default = "defaults::claim_lease")]
    pub claim_lease_secs: u64,
    /// How often the built-in janitor runs.
    #[serde(default = "defaults::janitor_interval")]
    pub janitor_interval_secs: u64,
    /// How often the built-in dlq-mover runs.
    #[serde(default = "defaults::redrive_interval")]
    pub redrive_interval_secs: u64,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            runner_command: None,
            runner_dir: None,
            runner_user: None,
            visibility_timeout_secs: defaults::visibility_timeout(),
            claim_lease_secs: defaults::claim_lease(),
            janitor_interval_secs: defaults::janitor_interval(),
            redrive_interval_secs: defaults::redrive_interval(),
        }
    }
}

mod defaults {
    pub fn listen() -> String {
        "127.0.0.1:8080".into()
    }
    pub fn visibility_timeout() -> u64 {
        30
    }
    pub fn claim_lease() -> u64 {
        20
    }
    pub fn janitor_interval() -> u64 {
        300
    }
    pub fn redrive_interval() -> u64 {
        3600
    }
}

impl LocalConfig {
    /// Field-named problems, as `(field under "local.", message)`.
    pub(crate) fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            out.push((
                "listen".into(),
                format!("{:?} must be an address like 127.0.0.1:8080", self.listen),
            ));
        }
        if self
            .runner_command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            out.push(("runner_command".into(), "must not be empty when set".into()));
        }
        if let Some(user) = &self.runner_user
            && !valid_account_prefix(user)
        {
            out.push((
                "runner_user".into(),
                format!(
                    "{user:?} must be \"root\" or an account name prefix: a-z or _ first, \
                     then a-z, 0-9, _ or -, at most 27 characters (accounts are <runner_user>-<n>)"
                ),
            ));
        }
        if self.visibility_timeout_secs == 0 {
            out.push((
                "visibility_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.claim_lease_secs == 0 || self.claim_lease_secs >= self.visibility_timeout_secs {
            out.push((
                "claim_lease_secs".into(),
                format!(
                    "must be at least 1 and below visibility_timeout_secs ({})",
                    self.visibility_timeout_secs
                ),
            ));
        }
        for (name, v) in [
            ("janitor_interval_secs", self.janitor_interval_secs),
            ("redrive_interval_secs", self.redrive_interval_secs),
        ] {
            if v == 0 {
                out.push((name.into(), "must be at least 1".into()));
            }
        }
        out
    }
}

/// `root`, or a prefix that leaves room for `-<n>` in a 32-character Linux
/// user name.
fn valid_account_prefix(s: &str) -> bool {
    if s == "root" {
        return true;
    }
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.len() <= 27
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_user_must_be_an_account_prefix_or_root() {
        for ok in ["root", "spotrunner-runner", "ci_1", "_r"] {
            let c = LocalConfig {
                runner_user: Some(ok.into()),
                ..Default::default()
            };
            assert!(c.problems().is_empty(), "{ok}");
        }
        for bad in ["", "Runner", "1abc", "a b", "x;rm", &"a".repeat(28)] {
            let c = LocalConfig {
                runner_user: Some(bad.into()),
                ..Default::default()
            };
            let problems = c.problems();
            assert_eq!(problems.len(), 1, "{bad:?}");
            assert_eq!(problems[0].0, "runner_user");
        }
    }
}
