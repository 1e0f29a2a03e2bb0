//! A GitHub App manifest checked as GitHub documents it ("Registering a
//! GitHub App from a manifest"): the fields, URLs, permission levels, the
//! permission each event needs, and the slug GitHub makes of a name.

use serde_json::Value;
use std::collections::BTreeMap;

/// GitHub refuses App names longer than this.
const MAX_NAME_CHARS: usize = 34;

/// What a valid manifest asks for.
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) url: String,
    pub(crate) redirect_url: String,
    /// `hook_attributes`: (url, active).
    pub(crate) hook: Option<(String, bool)>,
    pub(crate) permissions: BTreeMap<String, String>,
    pub(crate) events: Vec<String>,
}

/// A slug as GitHub makes one from a name: lower case, every run of other
/// characters than ASCII letters and digits one `-`, none at either end.
pub(crate) fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The permission an App needs (at least `read`) to subscribe to `event`,
/// as GitHub's webhook documentation states it; `None` when the fake does
/// not know (or the event needs none).
fn event_permission(event: &str) -> Option<&'static [&'static str]> {
    Some(match event {
        "workflow_job" | "workflow_run" => &["actions"],
        "check_run" | "check_suite" => &["checks"],
        "issues" | "issue_comment" => &["issues"],
        "milestone" => &["issues", "pull_requests"],
        "pull_request"
        | "pull_request_review"
        | "pull_request_review_comment"
        | "pull_request_review_thread" => &["pull_requests"],
        "push"
        | "create"
        | "delete"
        | "fork"
        | "commit_comment"
        | "gollum"
        | "release"
        | "repository_dispatch"
        | "workflow_dispatch" => &["contents"],
        "deployment" | "deployment_status" | "deploy_key" | "deployment_protection_rule" => {
            &["deployments"]
        }
        "branch_protection_rule" | "security_and_analysis" => &["administration"],
        "member" | "membership" | "organization" | "team" | "team_add" => &["members"],
        "status" => &["statuses"],
        _ => return None,
    })
}

/// Repository permissions: an App with any of them also gets `metadata: read`.
const REPOSITORY_PERMISSIONS: &[&str] = &[
    "actions",
    "administration",
    "checks",
    "contents",
    "deployments",
    "environments",
    "issues",
    "packages",
    "pages",
    "pull_requests",
    "repository_hooks",
    "repository_projects",
    "secret_scanning_alerts",
    "secrets",
    "security_events",
    "single_file",
    "statuses",
    "vulnerability_alerts",
    "workflows",
];

pub(crate) fn http_url(v: &Value, field: &str, problems: &mut Vec<String>) -> Option<String> {
    match v {
        Value::String(s) => match reqwest::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(s.clone()),
            _ => {
                problems.push(format!("{field} {s:?} is not a valid http(s) URL"));
                None
            }
        },
        _ => {
            problems.push(format!("{field} must be a string"));
            None
        }
    }
}

/// Check a manifest as GitHub documents it; every problem, not just the first.
pub(crate) fn validate(manifest: &Value) -> Result<Registration, Vec<String>> {
    let Some(m) = manifest.as_object() else {
        return Err(vec!["the manifest is not a JSON object".into()]);
    };
    let mut problems = Vec::new();
    let url = match m.get("url") {
        None | Some(Value::Null) => {
            problems.push("url wasn't supplied (it is required)".into());
            None
        }
        Some(v) => http_url(v, "url", &mut problems),
    };
    // GitHub's confirmation page asks for a name when the manifest has none;
    // the fake skips that page, so it needs one.
    let name = match m.get("name") {
        None | Some(Value::Null) => {
            problems.push(
                "name wasn't supplied (the fake skips the page where it would be typed)".into(),
            );
            None
        }
        Some(Value::String(n)) if n.trim().is_empty() => {
            problems.push("name can't be blank".into());
            None
        }
        Some(Value::String(n)) if n.chars().count() > MAX_NAME_CHARS => {
            problems.push(format!(
                "name is too long (maximum is {MAX_NAME_CHARS} characters)"
            ));
            None
        }
        Some(Value::String(n)) if slug(n).is_empty() => {
            problems.push(format!("name {n:?} has no letter or digit"));
            None
        }
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => {
            problems.push("name must be a string".into());
            None
        }
    };
    // Without it GitHub would not send the code anywhere the flow can use.
    let redirect_url = match m.get("redirect_url") {
        None | Some(Value::Null) => {
            problems.push("redirect_url wasn't supplied (the code goes back through it)".into());
            None
        }
        Some(v) => http_url(v, "redirect_url", &mut problems),
    };
    let hook = match m.get("hook_attributes") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => {
            let url = match h.get("url") {
                None | Some(Value::Null) => {
                    problems.push("hook_attributes.url wasn't supplied (it is required)".into());
                    None
                }
                Some(v) => http_url(v, "hook_attributes.url", &mut problems),
            };
            let active = match h.get("active") {
                None | Some(Value::Null) => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    problems.push("hook_attributes.active must be true or false".into());
                    true
                }
            };
            url.map(|u| (u, active))
        }
        Some(_) => {
            problems.push("hook_attributes must be an object".into());
            None
        }
    };
    let description = match m.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => {
            problems.push("description must be a string".into());
            None
        }
    };
    for field in ["public", "request_oauth_on_install", "setup_on_update"] {
        if let Some(v) = m.get(field)
            && !v.is_boolean()
            && !v.is_null()
        {
            problems.push(format!("{field} must be true or false"));
        }
    }
    if let Some(v) = m.get("setup_url")
        && !v.is_null()
    {
        http_url(v, "setup_url", &mut problems);
    }
    match m.get("callback_urls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(urls)) => {
            if urls.len() > 10 {
                problems.push(format!(
                    "callback_urls has {} URLs (at most 10)",
                    urls.len()
                ));
            }
            for u in urls {
                http_url(u, "callback_urls[]", &mut problems);
            }
        }
        Some(_) => problems.push("callback_urls must be an array of URLs".into()),
    }
    let mut permissions = BTreeMap::new();
    match m.get("default_permissions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            for (name, level) in p {
                let allowed: &[&str] = if matches!(
                    name.as_str(),
                    "organization_projects" | "repository_projects"
                ) {
                    &["read", "write", "admin"]
                } else {
                    &["read", "write"]
                };
                match level.as_str() {
                    Some(l) if allowed.contains(&l) => {
                        permissions.insert(name.clone(), l.to_string());
                    }
                    _ => problems.push(format!(
                        "default_permissions.{name}: {level} is not one of {}",
                        allowed.join(", ")
                    )),
                }
            }
        }
        Some(_) => problems.push("default_permissions must be an object".into()),
    }
    if permissions
        .keys()
        .any(|p| REPOSITORY_PERMISSIONS.contains(&p.as_str()))
    {
        permissions
            .entry("metadata".into())
            .or_insert_with(|| "read".into());
    }
    let mut events = Vec::new();
    match m.get("default_events") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for e in list {
                let Some(e) = e.as_str() else {
                    problems.push(format!("default_events: {e} is not an event name"));
                    continue;
                };
                if let Some(needs) = event_permission(e)
                    && !needs.iter().any(|p| permissions.contains_key(*p))
                {
                    problems.push(format!(
                        "default_events: {e} needs at least read access to {}",
                        needs.join(" or ")
                    ));
                }
                if !events.iter().any(|x| x == e) {
                    events.push(e.to_string());
                }
            }
        }
        Some(_) => problems.push("default_events must be an array of event names".into()),
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Registration {
        name: name.unwrap_or_default(),
        description,
        url: url.unwrap_or_default(),
        redirect_url: redirect_url.unwrap_or_default(),
        hook,
        permissions,
        events,
    })
}
