//! Who can run code on our runners: owners served, public repositories, and
//! GitHub's own "Allow public repositories" switch on the runner groups our
//! organisation pools register in. Locally an empty `allowed_owners` is a
//! warning; on AWS the configuration's validation already failed it.

use super::report::Check;
use spotrunner_core::Config;
use spotrunner_core::config::Scope;
use spotrunner_core::ports::{GitHubTarget, RunnerScope};
use spotrunner_github::{GitHubClient, InstallationInfo};
use std::collections::BTreeMap;

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
/// repositories use, for the organisations among `installations` we serve.
/// GitHub hands a queued job to any idle runner whose labels fit, in any
/// repository the runner's group admits: a runner launched for a private
/// repository's job in such a group can be taken by a fork pull request's
/// job of a public repository. So a group that allows public repositories
/// fails when a pool that refuses them registers there, and warns when every
/// pool there allows them anyway.
pub async fn runner_group_checks(
    config: &Config,
    client: &GitHubClient,
    installations: &[InstallationInfo],
) -> Vec<Check> {
    let mut out = Vec::new();
    // Group (lowercase) → does every org pool registering there allow public repositories?
    let mut groups: BTreeMap<String, bool> = BTreeMap::new();
    for p in config.pools.iter().filter(|p| p.scope == Scope::Org) {
        let allows = p.allows_public_repositories(config.allow_public_repositories);
        groups
            .entry(p.runner_group.trim().to_ascii_lowercase())
            .and_modify(|all| *all &= allows)
            .or_insert(allows);
    }
    if groups.is_empty() {
        return out;
    }
    for i in installations
        .iter()
        .filter(|i| i.account.kind == "Organization")
    {
        let org = &i.account.login;
        // Only the organisations we serve (any, when none is named).
        let mut named = config.named_owners().peekable();
        if named.peek().is_some() && !named.any(|o| o.eq_ignore_ascii_case(org)) {
            continue;
        }
        let id = format!("github.runner_groups.{org}");
        let target = GitHubTarget {
            scope: RunnerScope::Org { org: org.clone() },
            installation_id: Some(i.id),
        };
        let all = match client.runner_groups(&target, org).await {
            Ok(all) => all,
            Err(e) => {
                out.push(Check::warn(
                    id,
                    format!("{org}: cannot list runner groups: {e}"),
                    "the App needs organization self-hosted runners: read",
                ));
                continue;
            }
        };
        let open: Vec<(&str, bool)> = all
            .iter()
            .filter(|g| g.allows_public_repositories)
            .filter_map(|g| {
                groups
                    .get(&g.name.to_ascii_lowercase())
                    .map(|every_pool_allows| (g.name.as_str(), *every_pool_allows))
            })
            .collect();
        let names = |pick: bool| -> Vec<&str> {
            open.iter()
                .filter(|(_, allows)| *allows == pick)
                .map(|(n, _)| *n)
                .collect()
        };
        let fix = |names: &[&str]| {
            format!(
                "turn off \"Allow public repositories\" in {org}'s Settings → Actions → Runner groups → {}",
                names.join(", ")
            )
        };
        let (refusing, opted_in) = (names(false), names(true));
        if !refusing.is_empty() {
            out.push(Check::fail(
                id,
                format!(
                    "{org}: runner group(s) {} allow public repositories (GitHub's switch), but pools registering there refuse them: \
                     GitHub can hand a runner launched for a private repository's job to a public repository's (a fork pull request's) job",
                    refusing.join(", ")
                ),
                fix(&refusing),
            ));
        } else if !opted_in.is_empty() {
            out.push(Check::warn(
                id,
                format!(
                    "{org}: runner group(s) {} allow public repositories, as their pools do (allow_public_repositories)",
                    opted_in.join(", ")
                ),
                fix(&opted_in),
            ));
        } else {
            out.push(Check::pass(
                id,
                format!("{org}: our runner groups do not allow public repositories"),
            ));
        }
    }
    out
}
