//! The GitHub side of the doctor: credentials, the App (events, permissions),
//! its installations for every allowed owner, its webhook (URL, content type,
//! secret) and its recent deliveries. The secret is masked by GitHub, so
//! whether GitHub signs with ours is read off the deliveries our webhook
//! answered: a 401 is a signature it refused.

use super::report::Check;
use spotrunner_core::Config;
use spotrunner_core::config::GitHubAuth;
use spotrunner_core::github_app::{self, Needs, Permission};
use spotrunner_core::ports::{HookDeliveries, HookDelivery, HookRef, QueuedJobSource, SecretStore};
use spotrunner_github::{AppInfo, GitHubClient, HookConfig, InstallationInfo};
use std::collections::BTreeSet;

/// How the fix of a webhook problem reads.
fn webhook_fix(webhook_url: Option<&str>) -> String {
    format!(
        "spotrunner github-app webhook -c CONFIG --url {} (sets the App's webhook URL, JSON and our current secret)",
        webhook_url.unwrap_or("WEBHOOK_URL")
    )
}

pub async fn checks(
    config: &Config,
    store: Option<&dyn SecretStore>,
    webhook_url: Option<&str>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let client = match spotrunner_github::client_from_config(&config.github, store).await {
        Ok(c) => c,
        Err(e) => {
            out.push(Check::fail(
                "github.credentials",
                format!("cannot build the GitHub client: {e}"),
                "store the credential the configuration names (spotrunner github-app create writes the App's id and key)",
            ));
            return out;
        }
    };
    match &config.github.auth {
        GitHubAuth::Pat { .. } => {
            pat_checks(config, &client, &mut out).await;
            out
        }
        GitHubAuth::App { app_id, .. } => {
            let app = match client.get_app().await {
                Ok(app) => app,
                Err(e) => {
                    out.push(Check::fail(
                        "github.credentials",
                        format!("GET /app as App {app_id} at {}: {e}", config.github.api_url),
                        "the private key must be one of the App's keys and github.auth.app_id its id (App settings → Private keys)",
                    ));
                    return out;
                }
            };
            out.push(Check::pass(
                "github.credentials",
                format!("the key signs for App {} (id {})", app.slug, app.id),
            ));
            let required = github_app::permissions(Needs::of(config));
            app_checks(&app, &required, &mut out);
            installation_checks(config, &client, &app, &required, &mut out).await;
            let hook = client.app_hook_config().await;
            let deliveries = client.list_deliveries(&HookRef::App, None).await;
            webhook_checks(
                hook,
                deliveries.map(|p| p.deliveries),
                webhook_url,
                &mut out,
            );
            out
        }
    }
}

async fn pat_checks(config: &Config, client: &GitHubClient, out: &mut Vec<Check>) {
    let Some(owner) = config.named_owners().next() else {
        out.push(Check::warn(
            "github.credentials",
            "personal access token: nothing to try it on (allowed_owners is empty)",
            "list the owners in allowed_owners, or use a GitHub App (spotrunner github-app create)",
        ));
        return;
    };
    match client.list_repositories(owner, 1).await {
        Ok(_) => out.push(Check::pass(
            "github.credentials",
            format!("the personal access token lists {owner}'s repositories"),
        )),
        Err(e) => out.push(Check::fail(
            "github.credentials",
            format!("the personal access token cannot list {owner}'s repositories: {e}"),
            "a classic token needs admin:org (org runners) or repo; a fine-grained one the permissions listed by `spotrunner github-app create --help`",
        )),
    }
    out.push(Check::warn(
        "github.app",
        "personal access token: the App, installation and webhook checks do not apply",
        "prefer a GitHub App: short-lived tokens, and the webhook is checked here",
    ));
}

fn describe(missing: &[&Permission]) -> String {
    missing
        .iter()
        .map(|p| format!("{}: {} ({})", p.name, p.level.as_str(), p.why))
        .collect::<Vec<_>>()
        .join("; ")
}

fn app_checks(app: &AppInfo, required: &[Permission], out: &mut Vec<Check>) {
    if app.events.iter().any(|e| e == "workflow_job") {
        out.push(Check::pass(
            "github.app.events",
            "subscribed to workflow_job",
        ));
    } else {
        out.push(Check::fail(
            "github.app.events",
            format!(
                "not subscribed to workflow_job (events: {}): no job would ever reach spotrunner",
                if app.events.is_empty() {
                    "none".to_string()
                } else {
                    app.events.join(", ")
                }
            ),
            format!(
                "in the App's settings ({}), Permissions & events → Subscribe to events: tick \"Workflow job\"",
                app.html_url
            ),
        ));
    }
    let missing = github_app::missing(required, &app.permissions);
    if missing.is_empty() {
        out.push(Check::pass(
            "github.app.permissions",
            format!(
                "has {}",
                required
                    .iter()
                    .map(|p| format!("{}: {}", p.name, p.level.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    } else {
        out.push(Check::fail(
            "github.app.permissions",
            format!("lacks {}", describe(&missing)),
            format!(
                "in the App's settings ({}), Permissions & events: grant them; each installation's owner then accepts the new permissions",
                app.html_url
            ),
        ));
    }
}

/// Every owner whose jobs the configuration serves by name.
fn owners(config: &Config) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let named = config.named_owners().cloned().chain(
        config
            .allowed_repositories
            .iter()
            .filter_map(|r| r.split_once('/').map(|(o, _)| o.to_string())),
    );
    for o in named {
        if seen.insert(o.to_ascii_lowercase()) {
            out.push(o);
        }
    }
    out
}

async fn installation_checks(
    config: &Config,
    client: &GitHubClient,
    app: &AppInfo,
    required: &[Permission],
    out: &mut Vec<Check>,
) {
    let web = github_app::web_url_for(&config.github.api_url);
    let install = github_app::install_url(&web, &app.slug);
    let installations = match client.app_installations().await {
        Ok(i) => i,
        Err(e) => {
            out.push(Check::fail(
                "github.installations",
                format!("GET /app/installations: {e}"),
                "check the App's credentials and GitHub's status",
            ));
            return;
        }
    };
    out.extend(super::exposure::runner_group_checks(config, client, &installations).await);
    let owners = owners(config);
    if owners.is_empty() {
        if installations.is_empty() {
            out.push(Check::fail(
                "github.installations",
                "the App is installed nowhere",
                format!("install it: {install}"),
            ));
        } else {
            let names: Vec<_> = installations
                .iter()
                .map(|i| i.account.login.as_str())
                .collect();
            out.push(Check::pass(
                "github.installations",
                format!(
                    "installed on {} (allowed_owners names none: any owner)",
                    names.join(", ")
                ),
            ));
        }
        for i in &installations {
            installation_permissions(i, required, out);
        }
        return;
    }
    for owner in owners {
        let id = format!("github.installation.{owner}");
        match installations
            .iter()
            .find(|i| i.account.login.eq_ignore_ascii_case(&owner))
        {
            None => out.push(Check::fail(
                id,
                format!("the App is not installed on {owner}: its jobs cannot get runners"),
                format!("an owner of {owner} installs it: {install}"),
            )),
            Some(i) if i.suspended_at.is_some() => out.push(Check::fail(
                id,
                format!("the installation on {owner} is suspended"),
                format!(
                    "an owner of {owner} unsuspends it: {}",
                    i.html_url.as_deref().unwrap_or(&install)
                ),
            )),
            Some(i) => {
                out.push(Check::pass(
                    id,
                    format!(
                        "installed on {owner} ({}, installation {})",
                        i.account.kind, i.id
                    ),
                ));
                installation_permissions(i, required, out);
            }
        }
    }
}

fn installation_permissions(i: &InstallationInfo, required: &[Permission], out: &mut Vec<Check>) {
    let login = &i.account.login;
    let mut required: Vec<Permission> = required.to_vec();
    // A user's repositories get repository runners whatever the pool's scope.
    if i.account.kind == "User" && !required.iter().any(|p| p.name == "administration") {
        let mut extra = github_app::permissions(Needs {
            org_runners: false,
            repo_runners: true,
            reruns: false,
        });
        extra.retain(|p| p.name == "administration");
        required.extend(extra);
    }
    let missing = github_app::missing(&required, &i.permissions);
    if !missing.is_empty() {
        out.push(Check::fail(
            format!("github.installation.{login}.permissions"),
            format!(
                "the installation on {login} has not granted {}",
                describe(&missing)
            ),
            format!(
                "an owner of {login} accepts the App's new permissions at {}",
                i.html_url
                    .as_deref()
                    .unwrap_or("the installation's settings")
            ),
        ));
    }
}

fn webhook_checks(
    hook: Result<HookConfig, spotrunner_core::ports::PortError>,
    deliveries: Result<Vec<HookDelivery>, spotrunner_core::ports::PortError>,
    webhook_url: Option<&str>,
    out: &mut Vec<Check>,
) {
    let fix = webhook_fix(webhook_url);
    let hook = match hook {
        Ok(h) => h,
        Err(e) => {
            out.push(Check::fail(
                "github.webhook",
                format!("GET /app/hook/config: {e}"),
                "check the App's credentials",
            ));
            return;
        }
    };
    let norm = |u: &str| u.trim().trim_end_matches('/').to_string();
    match (&hook.url, webhook_url) {
        (None, _) => out.push(Check::fail(
            "github.webhook.url",
            "the App has no webhook URL: GitHub sends no events",
            fix.clone(),
        )),
        (Some(have), Some(want)) if norm(have) != norm(want) => out.push(Check::fail(
            "github.webhook.url",
            format!("the App sends to {have}, not to our {want}"),
            fix.clone(),
        )),
        (Some(have), Some(_)) => out.push(Check::pass(
            "github.webhook.url",
            format!("the App sends to {have}"),
        )),
        (Some(have), None) => out.push(Check::warn(
            "github.webhook.url",
            format!("the App sends to {have}; our URL was not given, so not compared"),
            "pass --webhook-url (Terraform output webhook_url) or set SPOTRUNNER_WEBHOOK_URL",
        )),
    }
    match hook.content_type.as_deref() {
        Some("json") => out.push(Check::pass(
            "github.webhook.content_type",
            "application/json",
        )),
        other => out.push(Check::fail(
            "github.webhook.content_type",
            format!(
                "content type {}: spotrunner's webhook reads JSON bodies only",
                other.unwrap_or("unset")
            ),
            fix.clone(),
        )),
    }
    if hook.insecure_ssl.as_deref() == Some("1") {
        out.push(Check::warn(
            "github.webhook.tls",
            "GitHub does not verify the webhook's TLS certificate (insecure_ssl = 1)",
            fix.clone(),
        ));
    }
    let deliveries = match deliveries {
        Ok(d) => d,
        Err(e) => {
            out.push(Check::fail(
                "github.deliveries",
                format!("GET /app/hook/deliveries: {e}"),
                "check the App's credentials",
            ));
            return;
        }
    };
    // GitHub lists the newest first; sort anyway.
    let mut deliveries = deliveries;
    deliveries.sort_by_key(|d| std::cmp::Reverse(d.delivered_at));
    if !hook.secret_set {
        out.push(Check::fail(
            "github.webhook.secret",
            "the App signs nothing (no webhook secret): spotrunner refuses unsigned deliveries",
            fix.clone(),
        ));
    } else {
        match deliveries.first() {
            None => out.push(Check::warn(
                "github.webhook.secret",
                "a secret is set (GitHub masks it); no delivery yet to tell whether it is ours",
                "run a job (or redeliver the App's ping from its Advanced settings), then run doctor again",
            )),
            Some(d) if d.status_code == 401 => out.push(Check::fail(
                "github.webhook.secret",
                format!(
                    "our webhook refused GitHub's latest delivery ({} {}, {}) with 401: the App signs with a secret that is not in webhook.secrets",
                    d.event,
                    d.guid,
                    d.delivered_at.format("%Y-%m-%d %H:%M:%SZ")
                ),
                fix.clone(),
            )),
            Some(d) if d.succeeded() => out.push(Check::pass(
                "github.webhook.secret",
                format!(
                    "our webhook accepted GitHub's latest delivery ({} at {}): it is signed with our secret",
                    d.event,
                    d.delivered_at.format("%Y-%m-%d %H:%M:%SZ")
                ),
            )),
            Some(_) => out.push(Check::warn(
                "github.webhook.secret",
                "a secret is set; the latest delivery failed for another reason (see github.deliveries)",
                "fix the delivery failure, then run doctor again",
            )),
        }
    }
    deliveries_check(&deliveries, webhook_url, out);
}

/// Why a delivery with this status failed, and what to do.
fn delivery_failure(status: u16, webhook_url: Option<&str>) -> (&'static str, String) {
    match status {
        0 => (
            "GitHub could not reach the URL (DNS, TLS or a timeout)",
            "check the URL answers from the internet: curl -i -X POST URL".into(),
        ),
        401 => ("refused: bad signature", webhook_fix(webhook_url)),
        404 => (
            "not found: the URL's path is wrong",
            format!("point the webhook at Terraform's webhook_url: {}", webhook_fix(webhook_url)),
        ),
        413 => ("refused: payload too large", "nothing to do for workflow_job events; other events can be unsubscribed".into()),
        500..=599 => (
            "our webhook failed",
            "read the webhook Lambda's logs (CloudWatch /aws/lambda/<prefix>-webhook); spotrunner redeliver recovers the missed jobs".into(),
        ),
        _ => ("unexpected answer", "read the webhook's logs".into()),
    }
}

fn deliveries_check(deliveries: &[HookDelivery], webhook_url: Option<&str>, out: &mut Vec<Check>) {
    let Some(latest) = deliveries.first() else {
        out.push(Check::warn(
            "github.deliveries",
            "no deliveries yet",
            "queue a job on a matching runs-on label, then run doctor again",
        ));
        return;
    };
    let failed: Vec<&HookDelivery> = deliveries.iter().filter(|d| !d.succeeded()).collect();
    if latest.succeeded() {
        if failed.is_empty() {
            out.push(Check::pass(
                "github.deliveries",
                format!("the last {} deliveries succeeded", deliveries.len()),
            ));
        } else {
            out.push(Check::warn(
                "github.deliveries",
                format!(
                    "the latest delivery succeeded, {} of the last {} failed (the oldest failure: {} {})",
                    failed.len(),
                    deliveries.len(),
                    failed.last().map(|d| d.status_code).unwrap_or(0),
                    failed.last().map(|d| d.event.as_str()).unwrap_or("")
                ),
                "the redelivery loop asks GitHub to redeliver failed workflow_job deliveries; nothing to do unless this repeats",
            ));
        }
    } else {
        let (why, fix) = delivery_failure(latest.status_code, webhook_url);
        out.push(Check::fail(
            "github.deliveries",
            format!(
                "the latest delivery ({} {}) failed with {}: {why}; {} of the last {} failed",
                latest.event,
                latest.guid,
                latest.status_code,
                failed.len(),
                deliveries.len()
            ),
            fix,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotrunner_core::ports::HookDelivery;

    fn delivery(status: u16, secs_ago: i64) -> HookDelivery {
        HookDelivery {
            id: secs_ago as u64,
            guid: format!("g{secs_ago}"),
            delivered_at: chrono::Utc::now() - chrono::Duration::seconds(secs_ago),
            redelivery: false,
            status_code: status,
            event: "workflow_job".into(),
            action: Some("queued".into()),
        }
    }

    fn hook(secret_set: bool) -> HookConfig {
        HookConfig {
            url: Some("https://x/webhook".into()),
            content_type: Some("json".into()),
            insecure_ssl: Some("0".into()),
            secret_set,
        }
    }

    fn by_id<'a>(out: &'a [Check], id: &str) -> &'a Check {
        out.iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no {id} in {out:?}"))
    }

    #[test]
    fn a_latest_401_is_a_secret_mismatch_with_the_webhook_fix() {
        let mut out = Vec::new();
        webhook_checks(
            Ok(hook(true)),
            Ok(vec![delivery(202, 60), delivery(401, 5)]),
            Some("https://x/webhook/"),
            &mut out,
        );
        let s = by_id(&out, "github.webhook.secret");
        assert_eq!(s.status, super::super::report::Status::Fail, "{s:?}");
        assert!(s.fix.as_deref().unwrap().contains("github-app webhook"));
        assert_eq!(
            by_id(&out, "github.webhook.url").status,
            super::super::report::Status::Pass
        );
        assert_eq!(
            by_id(&out, "github.deliveries").status,
            super::super::report::Status::Fail
        );
    }

    #[test]
    fn an_accepted_latest_delivery_proves_the_secret_and_old_failures_only_warn() {
        let mut out = Vec::new();
        webhook_checks(
            Ok(hook(true)),
            Ok(vec![delivery(500, 600), delivery(202, 5)]),
            None,
            &mut out,
        );
        assert_eq!(
            by_id(&out, "github.webhook.secret").status,
            super::super::report::Status::Pass
        );
        assert_eq!(
            by_id(&out, "github.deliveries").status,
            super::super::report::Status::Warn
        );
        assert_eq!(
            by_id(&out, "github.webhook.url").status,
            super::super::report::Status::Warn
        );
    }

    #[test]
    fn no_secret_or_a_form_content_type_fail() {
        let mut out = Vec::new();
        let mut h = hook(false);
        h.content_type = Some("form".into());
        webhook_checks(Ok(h), Ok(vec![]), None, &mut out);
        assert_eq!(
            by_id(&out, "github.webhook.secret").status,
            super::super::report::Status::Fail
        );
        assert_eq!(
            by_id(&out, "github.webhook.content_type").status,
            super::super::report::Status::Fail
        );
        assert_eq!(
            by_id(&out, "github.deliveries").status,
            super::super::report::Status::Warn
        );
    }
}
