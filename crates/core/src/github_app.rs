//! The GitHub App spotrunner needs, written once: the permissions (each with
//! the feature that needs it), the webhook event, and the App manifest
//! `spotrunner github-app create` posts. `spotrunner doctor` checks an App and
//! its installations against the same list.

use crate::config::{CapacityType, Config, Scope};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The one webhook event spotrunner acts on.
pub const EVENTS: &[&str] = &["workflow_job"];

/// A permission level, ordered: `write` covers `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Read,
    Write,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
        }
    }

    /// GitHub's spelling (`read`, `write`; `admin` only for a few, which covers both).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Level::Read),
            "write" | "admin" => Some(Level::Write),
            _ => None,
        }
    }
}

/// One permission of the App and why spotrunner asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// GitHub's name (`organization_self_hosted_runners`, …).
    pub name: &'static str,
    pub level: Level,
    /// The feature that needs it.
    pub why: &'static str,
}

/// What a deployment does with GitHub, which decides the permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// Organisation-scoped runners (JIT registration and deletion at the org).
    pub org_runners: bool,
    /// Repository-scoped runners (repo pools, and every user's repository).
    pub repo_runners: bool,
    /// Re-running jobs a spot interruption killed.
    pub reruns: bool,
}

impl Needs {
    /// From a configuration: the pools' scopes, and re-runs in spot pools.
    pub fn of(config: &Config) -> Self {
        Self {
            org_runners: config.pools.iter().any(|p| p.scope == Scope::Org),
            repo_runners: config.pools.iter().any(|p| p.scope == Scope::Repo),
            reruns: config
                .pools
                .iter()
                .any(|p| p.spot.reruns > 0 && p.capacity_type == CapacityType::Spot),
        }
    }
}

/// The permissions an App needs for `needs`, least privilege.
pub fn permissions(needs: Needs) -> Vec<Permission> {
    let mut out = Vec::new();
    if needs.org_runners {
        out.push(Permission {
            name: "organization_self_hosted_runners",
            level: Level::Write,
            why: "register just-in-time runners at the organisation, list and delete them",
        });
    }
    if needs.repo_runners {
        out.push(Permission {
            name: "administration",
            level: Level::Write,
            why: "register just-in-time runners at a repository (repo-scoped pools, users' repositories), list and delete them",
        });
    }
    out.push(if needs.reruns {
        Permission {
            name: "actions",
            level: Level::Write,
            why: "read a job's status (start check, missed-job sweep) and re-run jobs a spot interruption killed",
        }
    } else {
        Permission {
            name: "actions",
            level: Level::Read,
            why: "read a job's status (start check, missed-job sweep)",
        }
    });
    out.push(Permission {
        name: "metadata",
        level: Level::Read,
        why: "list the installation's repositories (missed-job sweep); every App has it",
    });
    out
}

/// The required permissions `granted` lacks (absent, or read where write is needed).
pub fn missing<'a>(
    required: &'a [Permission],
    granted: &BTreeMap<String, String>,
) -> Vec<&'a Permission> {
    required
        .iter()
        .filter(|p| {
            granted
                .get(p.name)
                .and_then(|l| Level::parse(l))
                .is_none_or(|l| l < p.level)
        })
        .collect()
}

/// GitHub's web address for an API base: `https://api.github.com` →
/// `https://github.com`, `https://HOST/api/v3` (Enterprise Server) →
/// `https://HOST`; anything else is taken as serving both.
pub fn web_url_for(api_url: &str) -> String {
    let api = api_url.trim().trim_end_matches('/');
    if let Some(rest) = api.strip_prefix("https://api.") {
        return format!("https://{rest}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

/// Where the manifest form posts: an organisation's or the signed-in user's
/// "new App" page.
pub fn new_app_url(web_url: &str, org: Option<&str>) -> String {
    let web = web_url.trim_end_matches('/');
    match org {
        Some(org) => format!("{web}/organizations/{org}/settings/apps/new"),
        None => format!("{web}/settings/apps/new"),
    }
}

/// Where an App is installed from.
pub fn install_url(web_url: &str, slug: &str) -> String {
    format!(
        "{}/apps/{slug}/installations/new",
        web_url.trim_end_matches('/')
    )
}

/// The App manifest (GitHub's "Registering a GitHub App from a manifest"):
/// private, exactly `permissions`, the `workflow_job` event to `webhook_url`.
pub fn manifest(
    name: &str,
    homepage: &str,
    webhook_url: &str,
    redirect_url: &str,
    permissions: &[Permission],
) -> Value {
    let perms: serde_json::Map<String, Value> = permissions
        .iter()
        .map(|p| (p.name.to_string(), json!(p.level.as_str())))
        .collect();
    json!({
        "name": name,
        "url": homepage,
        "description": "spotrunner: just-in-time, ephemeral GitHub Actions runners on EC2 Spot",
        "hook_attributes": { "url": webhook_url, "active": true },
        "redirect_url": redirect_url,
        "public": false,
        "default_permissions": perms,
        "default_events": EVENTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn org_runners_with_reruns_need_org_runners_write_and_actions_write() {
        let p = permissions(Needs {
            org_runners: true,
            repo_runners: false,
            reruns: true,
        });
        let names: Vec<_> = p.iter().map(|p| (p.name, p.level)).collect();
        assert_eq!(
            names,
            vec![
                ("organization_self_hosted_runners", Level::Write),
                ("actions", Level::Write),
                ("metadata", Level::Read),
            ]
        );
        assert!(p.iter().all(|p| !p.why.is_empty()));
    }

    #[test]
    fn without_reruns_actions_is_read_only_and_repo_pools_need_administration() {
        let p = permissions(Needs {
            org_runners: false,
            repo_runners: true,
            reruns: false,
        });
        assert!(
            p.iter()
                .any(|p| p.name == "administration" && p.level == Level::Write)
        );
        assert!(
            p.iter()
                .any(|p| p.name == "actions" && p.level == Level::Read)
        );
        assert!(
            !p.iter()
                .any(|p| p.name == "organization_self_hosted_runners")
        );
    }

    #[test]
    fn web_addresses_of_github_and_enterprise_server() {
        assert_eq!(web_url_for("https://api.github.com"), "https://github.com");
        assert_eq!(web_url_for("https://ghe.corp/api/v3/"), "https://ghe.corp");
        assert_eq!(web_url_for("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(
            new_app_url("https://github.com", Some("acme")),
            "https://github.com/organizations/acme/settings/apps/new"
        );
        assert_eq!(
            new_app_url("https://github.com/", None),
            "https://github.com/settings/apps/new"
        );
        assert_eq!(
            install_url("https://github.com", "sr-ci"),
            "https://github.com/apps/sr-ci/installations/new"
        );
    }

    #[test]
    fn missing_counts_absent_and_too_low_levels() {
        let req = permissions(Needs {
            org_runners: true,
            repo_runners: false,
            reruns: true,
        });
        let g = granted(&[
            ("organization_self_hosted_runners", "write"),
            ("actions", "read"),
            ("metadata", "read"),
        ]);
        let m: Vec<_> = missing(&req, &g).iter().map(|p| p.name).collect();
        assert_eq!(m, vec!["actions"]);
        let all = granted(&[
            ("organization_self_hosted_runners", "write"),
            ("actions", "write"),
            ("metadata", "read"),
            ("contents", "read"),
        ]);
        assert!(missing(&req, &all).is_empty());
        assert_eq!(missing(&req, &BTreeMap::new()).len(), 3);
    }

    #[test]
    fn the_manifest_asks_for_exactly_the_permissions_and_workflow_job() {
        let req = permissions(Needs {
            org_runners: true,
            repo_runners: false,
            reruns: false,
        });
        let m = manifest(
            "sr-ci",
            "https://x",
            "https://hook/webhook",
            "http://127.0.0.1:1/callback",
            &req,
        );
        assert_eq!(m["hook_attributes"]["url"], "https://hook/webhook");
        assert_eq!(m["redirect_url"], "http://127.0.0.1:1/callback");
        assert_eq!(m["public"], false);
        assert_eq!(m["default_events"], json!(["workflow_job"]));
        assert_eq!(
            m["default_permissions"],
            json!({"organization_self_hosted_runners": "write", "actions": "read", "metadata": "read"})
        );
    }
}
