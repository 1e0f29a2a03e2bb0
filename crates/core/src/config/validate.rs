//! Validation of a parsed [`Config`]: every problem names its field and its rule.

use super::{Architecture, CapacityType, Config, GitHubAuth, Pool, Scope};
use crate::names::{self, MAX_DEPLOYMENT, MAX_POOL_NAME};
use std::collections::HashSet;
use std::fmt;

/// One broken rule, at one field (`pools[1].labels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A configuration that did not parse or did not validate; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub errors: Vec<FieldError>,
}

impl ConfigError {
    pub(crate) fn parse(field: String, message: String) -> Self {
        let field = if field == "." { String::new() } else { field };
        Self {
            errors: vec![FieldError { field, message }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl Config {
    /// Check every rule; `Err` lists all problems, each naming its field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        validate_deployment(&self.deployment, &mut p);
        let api = &self.github.api_url;
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            p.add("github.api_url", format!("{api:?} must be an http(s) URL"));
        }
        match self.webhook.secrets.len() {
            1 | 2 => {}
            n => p.add(
                "webhook.secrets",
                format!("must hold 1 or 2 secrets (current, previous), not {n}"),
            ),
        }
        if self.allows_any_owner() && self.allowed_owners.len() > 1 {
            p.add(
                "allowed_owners",
                "\"*\" (any owner) must stand alone; remove it or the named owners",
            );
        }
        for (i, r) in self.allowed_repositories.iter().enumerate() {
            if r.split('/').filter(|s| !s.is_empty()).count() != 2 || r.matches('/').count() != 1 {
                p.add(
                    format!("allowed_repositories[{i}]"),
                    format!("{r:?} must be owner/name"),
                );
            }
        }
        if !crate::runner_cache::is_valid_runner_version(&self.runner_version) {
            p.add(
                "runner_version",
                format!(
                    "{:?} must be \"latest\" or a version like 2.329.0",
                    self.runner_version
                ),
            );
        }
        if self.recovery.runner_cache.max_age_days == 0 {
            p.add("recovery.runner_cache.max_age_days", "must be at least 1");
        }
        if self.max_total_weight == Some(0) {
            p.add("max_total_weight", "must be at least 1 when set");
        }
        if self.pools.is_empty() {
            p.add("pools", "must not be empty");
        }
        let mut seen = HashSet::new();
        for (i, pool) in self.pools.iter().enumerate() {
            validate_pool(i, pool, &mut p);
            for (field, message) in super::runner_user::problems(pool, &self.runner_version) {
                p.add(format!("pools[{i}].{field}"), message);
            }
            if let Some(sizing) = &pool.sizing {
                for (field, message) in sizing.problems(pool, self.max_total_weight) {
                    p.add(format!("pools[{i}].sizing.{field}"), message);
                }
            }
            if !seen.insert(pool.name.as_str()) {
                p.add(
                    format!("pools[{i}].name"),
                    format!("{:?} is used by an earlier pool", pool.name),
                );
            }
            if let Some(max) = self.max_total_weight
                && pool.weight > max
            {
                p.add(
                    format!("pools[{i}].weight"),
                    format!(
                        "{} exceeds max_total_weight {max}: no runner could ever start",
                        pool.weight
                    ),
                );
            }
        }
        for (field, message) in self.recovery.redelivery.problems() {
            p.add(format!("recovery.redelivery.{field}"), message);
        }
        for (field, message) in self.recovery.sweep.problems() {
            p.add(format!("recovery.sweep.{field}"), message);
        }
        if let Some(local) = &self.local {
            for (field, message) in local.problems() {
                p.add(format!("local.{field}"), message);
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors: p.0 })
        }
    }
}

fn validate_deployment(d: &str, p: &mut Problems) {
    let ok_chars = d
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if d.is_empty() || d.len() > MAX_DEPLOYMENT {
        p.add(
            "deployment",
            format!("{d:?} must be 1 to {MAX_DEPLOYMENT} characters"),
        );
    } else if !ok_chars || !d.starts_with(|c: char| c.is_ascii_lowercase()) {
        p.add(
            "deployment",
            format!("{d:?} must start with a-z and hold only a-z, 0-9 and '-'"),
        );
    }
}

fn validate_pool(i: usize, pool: &Pool, p: &mut Problems) {
    let f = |name: &str| format!("pools[{i}].{name}");
    if let Some(problem) = names::name_part_problem(&pool.name) {
        p.add(f("name"), problem);
    } else if pool.name.len() > MAX_POOL_NAME {
        p.add(
            f("name"),
            format!("{:?} is longer than {MAX_POOL_NAME} characters", pool.name),
        );
    }
    if pool.labels.is_empty() {
        p.add(f("labels"), "must not be empty");
    }
    let mut seen = HashSet::new();
    for (j, label) in pool.labels.iter().enumerate() {
        if let Some(problem) = names::label_problem(label) {
            p.add(f(&format!("labels[{j}]")), problem);
        } else if crate::sizing::is_reserved(label) {
            p.add(
                f(&format!("labels[{j}]")),
                format!(
                    "{label:?} uses the reserved prefix {:?} (sizing labels are asked by jobs, not served by pools)",
                    crate::sizing::PREFIX
                ),
            );
        } else if !seen.insert(label.to_ascii_lowercase()) {
            p.add(
                f(&format!("labels[{j}]")),
                format!("{label:?} is listed twice (labels are case-insensitive)"),
            );
        }
    }
    if pool.max_runners == 0 {
        p.add(f("max_runners"), "must be at least 1");
    }
    if pool.weight == 0 {
        p.add(f("weight"), "must be at least 1");
    }
    if pool.runner_group.trim().is_empty() {
        p.add(f("runner_group"), "must not be empty");
    }
    if pool.on_demand_fallback && pool.capacity_type == CapacityType::OnDemand {
        p.add(
            f("on_demand_fallback"),
            "only applies to spot pools (capacity_type = \"spot\")",
        );
    }
    if !(30..=3600).contains(&pool.boot_timeout_secs) {
        p.add(f("boot_timeout_secs"), "must be between 30 and 3600");
    }
    if pool.idle_timeout_secs < 60 {
        p.add(f("idle_timeout_secs"), "must be at least 60");
    }
    // The SSM command that runs the runner times out after at most 48 h.
    if !(60..=172_800).contains(&pool.max_run_time_secs) {
        p.add(
            f("max_run_time_secs"),
            "must be between 60 and 172800 (48 h, SSM's longest command timeout)",
        );
    }
    let r = &pool.relaunch;
    if !(1..=20).contains(&r.max_launches) {
        p.add(f("relaunch.max_launches"), "must be between 1 and 20");
    }
    if r.delay_secs > 900 {
        p.add(
            f("relaunch.delay_secs"),
            "must be at most 900 (SQS's longest delay)",
        );
    }
    if r.circuit_failures > 0 && r.circuit_window_secs == 0 {
        p.add(f("relaunch.circuit_window_secs"), "must be at least 1");
    }
    if r.circuit_failures > 0 && r.circuit_cooldown_secs == 0 {
        p.add(f("relaunch.circuit_cooldown_secs"), "must be at least 1");
    }
    let sp = &pool.spot;
    if sp.reruns > 5 {
        p.add(f("spot.reruns"), "must be between 0 and 5");
    }
    if sp.breaker_interruptions > 0 && sp.breaker_window_secs == 0 {
        p.add(f("spot.breaker_window_secs"), "must be at least 1");
    }
    if sp.breaker_interruptions > 0 && sp.breaker_cooldown_secs == 0 {
        p.add(f("spot.breaker_cooldown_secs"), "must be at least 1");
    }
    if let Some(hot) = &pool.hot {
        for (field, problem) in hot.problems(pool.max_runners) {
            p.add(f(&format!("hot.{field}")), problem);
        }
        if hot.repository.is_some() && pool.scope == Scope::Org {
            p.add(
                f("hot.repository"),
                "an org-scoped pool's hot runners register with an organisation: set hot.owner",
            );
        }
        if hot.owner.is_some() && pool.scope == Scope::Repo {
            p.add(
                f("hot.owner"),
                "a repo-scoped pool's hot runners register with a repository: set hot.repository",
            );
        }
    }
    if pool.max_run_time_secs <= pool.boot_timeout_secs {
        p.add(f("max_run_time_secs"), "must exceed boot_timeout_secs");
    }
    for (j, s) in pool.subnets.iter().enumerate() {
        if !s.starts_with("subnet-") {
            p.add(
                f(&format!("subnets[{j}]")),
                format!("{s:?} is not a subnet id"),
            );
        }
    }
    if pool.instance_types.iter().any(|t| t.trim().is_empty()) {
        p.add(f("instance_types"), "must not hold empty names");
    }
    validate_architecture(i, pool, p);
}

/// One architecture per pool: the instance types agree with each other and
/// with an explicit `architecture`.
fn validate_architecture(i: usize, pool: &Pool, p: &mut Problems) {
    let typed: Vec<(&str, Architecture)> = pool
        .instance_types
        .iter()
        .map(|t| (t.as_str(), Architecture::of_instance_type(t)))
        .collect();
    let list = |arch: Architecture| {
        typed
            .iter()
            .filter(|(_, a)| *a == arch)
            .map(|(t, _)| *t)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (x64, arm64) = (list(Architecture::X64), list(Architecture::Arm64));
    if !x64.is_empty() && !arm64.is_empty() {
        p.add(
            format!("pools[{i}].instance_types"),
            format!("mixes architectures (x64: {x64}; arm64: {arm64}): one pool, one architecture"),
        );
    } else if let (Some(explicit), Some((_, derived))) = (pool.architecture, typed.first())
        && explicit != *derived
    {
        p.add(
            format!("pools[{i}].architecture"),
            format!("is {explicit} but the instance types are {derived}"),
        );
    }
}

impl Config {
    /// Rules that only hold for the AWS backend (launch templates, instance types, subnets).
    pub fn validate_for_aws(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        // The deployed document sits in SSM where every Lambda reads it, and in
        // Terraform state and plans: literal secrets have no place there.
        let literal = "value: secrets are for local testing only; on AWS use ssm:/name";
        match &self.github.auth {
            GitHubAuth::App {
                app_id,
                private_key,
            } => {
                if private_key.is_literal() {
                    p.add("github.auth.private_key", literal);
                }
                if matches!(app_id, super::AppId::Ref(r) if r.is_literal()) {
                    p.add(
                        "github.auth.app_id",
                        "value: is for local testing only; on AWS give the number or ssm:/name",
                    );
                }
            }
            GitHubAuth::Pat { token } if token.is_literal() => p.add("github.auth.token", literal),
            _ => {}
        }
        for (i, secret) in self.webhook.secrets.iter().enumerate() {
            if secret.is_literal() {
                p.add(format!("webhook.secrets[{i}]"), literal);
            }
        }
        // Fail closed: an empty list would serve any owner the credentials
        // reach (any account that installs a public App). Say so explicitly.
        if self.allowed_owners.is_empty() && self.allowed_repositories.is_empty() {
            p.add(
                "allowed_owners",
                "is empty, which would serve every owner the credentials reach: \
                 list the organisations/users (or the repositories in allowed_repositories), \
                 or say [\"*\"] to serve any owner on purpose",
            );
        }
        for (i, pool) in self.pools.iter().enumerate() {
            if pool.launch_template.as_deref().unwrap_or("").is_empty() {
                p.add(format!("pools[{i}].launch_template"), "is required on AWS");
            }
            if pool.instance_types.is_empty() {
                p.add(
                    format!("pools[{i}].instance_types"),
                    "must not be empty on AWS",
                );
            }
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors: p.0 })
        }
    }
}
