//! `recovery`: the two scheduled nets under the webhook (GitHub never
//! redelivers a failed delivery by itself): the redelivery loop and the
//! missed-job sweep (`crate::recovery`).

use super::GitHubAuth;
use crate::ports::HookRef;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    pub redelivery: RedeliveryConfig,
    pub sweep: SweepConfig,
    /// Fill the runner cache with verified runner tarballs.
    pub runner_cache: super::runner_cache::RunnerCacheConfig,
}

/// Ask GitHub to redeliver `workflow_job` deliveries our endpoint failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedeliveryConfig {
    pub enabled: bool,
    /// Seconds between runs (`serve`; on AWS the module's schedule).
    pub interval_secs: u64,
    /// GitHub API calls one run may make (list pages + redelivery requests).
    pub max_calls: u32,
    /// Redelivery requests per delivery before it is given up (and logged).
    pub max_requests: u32,
    /// How far back the first run looks (later runs continue from a checkpoint).
    pub lookback_secs: u64,
    /// The webhook is not the GitHub App's but an organisation's (`hook_org`)
    /// or a repository's (`hook_repository`, `owner/name`) hook with this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_org: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook_repository: Option<String>,
}

impl Default for RedeliveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            max_calls: 20,
            max_requests: 3,
            lookback_secs: 6 * 3600,
            hook_id: None,
            hook_org: None,
            hook_repository: None,
        }
    }
}

impl RedeliveryConfig {
    /// The hook whose deliveries the loop reads: the one configured by id, else
    /// the App's; `None` with a PAT and no hook id (nothing to read).
    pub fn hook(&self, auth: &GitHubAuth) -> Option<HookRef> {
        match (self.hook_id, &self.hook_org, &self.hook_repository) {
            (Some(id), Some(org), None) => Some(HookRef::Org {
                org: org.clone(),
                id,
            }),
            (Some(id), None, Some(repo)) => {
                let (owner, name) = repo.split_once('/')?;
                Some(HookRef::Repo {
                    owner: owner.into(),
                    repo: name.into(),
                    id,
                })
            }
            (None, None, None) => match auth {
                GitHubAuth::App { .. } => Some(HookRef::App),
                GitHubAuth::Pat { .. } => None,
            },
            _ => None,
        }
    }

    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.interval_secs == 0 {
            p.push(("interval_secs", "must be at least 1".to_string()));
        }
        if self.max_calls < 2 {
            p.push((
                "max_calls",
                "must be at least 2 (one page and one redelivery)".to_string(),
            ));
        }
        if self.max_requests == 0 {
            p.push(("max_requests", "must be at least 1".to_string()));
        }
        if self.lookback_secs == 0 || self.lookback_secs > 3 * 24 * 3600 {
            p.push((
                "lookback_secs",
                "must be between 1 and 259200 (GitHub keeps deliveries for 3 days)".to_string(),
            ));
        }
        match (self.hook_id, &self.hook_org, &self.hook_repository) {
            (None, None, None) | (Some(_), Some(_), None) => {}
            (Some(_), None, Some(r)) => {
                if r.split('/').filter(|s| !s.is_empty()).count() != 2
                    || r.matches('/').count() != 1
                {
                    p.push(("hook_repository", format!("{r:?} must be owner/name")));
                }
            }
            (Some(_), None, None) => p.push((
                "hook_id",
                "needs hook_org or hook_repository (whose hook it is)".to_string(),
            )),
            (Some(_), Some(_), Some(_)) => p.push((
                "hook_org",
                "set hook_org or hook_repository, not both".to_string(),
            )),
            (None, _, _) => p.push((
                "hook_id",
                "must be set with hook_org or hook_repository".to_string(),
            )),
        }
        p
    }
}

/// Look for queued jobs of the allowed repositories that the ledger does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepConfig {
    pub enabled: bool,
    pub interval_secs: u64,
    /// GitHub API calls one run may make; a run that stops early continues
    /// with the next repository next time.
    pub max_calls: u32,
    /// A job queued more recently than this is left to its webhook.
    pub min_age_secs: u64,
    /// Stop when less than this share (percent) of the rate limit remains.
    pub min_rate_remaining_percent: u32,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 300,
            max_calls: 50,
            min_age_secs: 120,
            min_rate_remaining_percent: 20,
        }
    }
}

impl SweepConfig {
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut p = Vec::new();
        if self.interval_secs == 0 {
            p.push(("interval_secs", "must be at least 1".to_string()));
        }
        if self.max_calls == 0 {
            p.push(("max_calls", "must be at least 1".to_string()));
        }
        if self.min_rate_remaining_percent > 100 {
            p.push((
                "min_rate_remaining_percent",
                "must be at most 100".to_string(),
            ));
        }
        p
    }
}
