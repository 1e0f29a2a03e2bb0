//! Who can run code on our runners: owners served, public repositories, and
//! GitHub's own "Allow public repositories" switch on the runner groups our
//! organisation pools register in. Locally an empty `allowed_owners` is a
//! warning; on AWS the configuration's validation already failed it.

use super::report::Check;
use spotrunner_core::Config;
use spotrunner_core::config::Scope;
use spotrunner_core::ports::{GitHubTarget, RunnerScope};
use spotrunner_github::{GitHubClient, InstallationInfo};
use std::collections::BTreeSet;

/// What the configuration alone says.
pub fn config_checks(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    if config.allows_any_owner() {
        out.push(Check::warn(
            "security.allowed_owners",
            "allowed_owners = [\"*\"]: jobs of every account the credentials reach are served",
            "list the organisations and users you mean to serve in allowed_owners",
        ));
    } else if config.allowed_owners.is_empty() && config.allowed_repositories.is_empty() {
        out.push(Check::warn(
            "security.allowed_owners",
            "allowed_owners is empty: any owner is served (refused on AWS)",
            "list the organisations and users you mean to serve, or say [\"*\"] on purpose",
        ));
    } else {
        out.push(Check::pass(
            "security.allowed_owners",
            "only the owners and repositories named are served",
        ));
    }
    let open: Vec<&str> = config
        .pools
        .iter()
        .filter(|p| p.allows_public_repositories(config.allow_public_repositories))
        .map(|p| p.name.as_str())
        .collect();
    if open.is_empty() {
        out.push(Check::pass(
            "security.public_repositories",
            "no pool serves public repositories (their jobs are ignored: public_repository)",
        ));
    } else {
        out.push(Check::warn(
            "security.public_repositories",
            format!(
                "pool(s) {} serve public repositories: anyone who can open a pull request there can run code on their runners",
                open.join(", ")
            ),
            "keep it only for pools meant for it, and in each repository's Settings → Actions → General require approval for workflows from outside collaborators (\"Require approval for all external contributors\")",
        ));
    }
    out
}

/// The runner groups of organisation pools that GitHub lets public
/// repositories use: the organisations among `installations` we serve.
pub async fn runner_group_checks(
    config: &Config,
    client: &GitHubClient,
    installations: &[InstallationInfo],
) -> Vec<Check> {
    let mut out = Vec::new();
    let groups: BTreeSet<String> = config
        .pools
        .iter()
        .filter(|p| p.scope == Scope::Org)
        .map(|p| p.runner_group.trim().to_ascii_lowercase())
        .collect();
    if groups.is_empty() {
        return out;
    }
    for i in installations
        .iter()
        .filter(|i| i.account.kind == "Organization")
    {
        let org = &i.account.login;
        if !config.allows_any_owner()
            && !config.allowed_owners.is_empty()
            && !config.named_owners().any(|o| o.eq_ignore_ascii_case(org))
        {
            continue;
        }
        let id = format!("github.runner_groups.{org}");
        let target = GitHubTarget {
            scope: RunnerScope::Org { org: org.clone() },
            installation_id: Some(i.id),
        };
        match client.runner_groups(&target, org).await {
            Ok(all) => {
                let open: Vec<&str> = all
                    .iter()
                    .filter(|g| {
                        g.allows_public_repositories
                            && groups.contains(&g.name.to_ascii_lowercase())
                    })
                    .map(|g| g.name.as_str())
                    .collect();
                if open.is_empty() {
                    out.push(Check::pass(
                        id,
                        format!("{org}: our runner groups do not allow public repositories"),
                    ));
                } else {
                    out.push(Check::warn(
                        id,
                        format!(
                            "{org}: runner group(s) {} allow public repositories (GitHub's switch): \
                             spotrunner still ignores public repositories' jobs unless a pool allows them",
                            open.join(", ")
                        ),
                        format!(
                            "turn off \"Allow public repositories\" in {org}'s Settings → Actions → Runner groups → {}",
                            open.join(", ")
                        ),
                    ));
                }
            }
            Err(e) => out.push(Check::warn(
                id,
                format!("{org}: cannot list runner groups: {e}"),
                "the App needs organization self-hosted runners: read",
            )),
        }
    }
    out
}
