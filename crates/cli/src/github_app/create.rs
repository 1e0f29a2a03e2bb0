//! `spotrunner github-app create`: GitHub's manifest flow from the terminal.
//!
//! 1. Check the store would not overwrite anything (before an App exists).
//! 2. Serve a one-page form on 127.0.0.1 whose hidden field holds the manifest
//!    (`core::github_app::manifest`) and which posts to GitHub's "new App" page
//!    with a random `state`. Every request must name the page's own host
//!    (`host.rs`: no DNS rebinding).
//! 3. GitHub sends the browser back to `/callback?code=…&state=…`; the state
//!    must match, the code is converted (`POST /app-manifests/{code}/conversions`),
//!    the App must be the one asked for (`expect.rs`: owner and name), and its
//!    id, key and webhook secret are stored (`store.rs`). The webhook secret is
//!    GitHub's when it has [`MIN_WEBHOOK_SECRET_LEN`] characters or more (GitHub's
//!    have 40), else one made here and set on the App.
//! 4. Print what was stored (references, never values) and the install link.

use super::store::{Store, Stored};
use super::{expect, host, page};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use spotrunner_core::github_app::{self, Permission};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The shortest webhook secret stored (a configuration refuses shorter ones).
pub const MIN_WEBHOOK_SECRET_LEN: usize = 32;

/// What the flow needs to know.
pub struct Plan {
    pub api_url: String,
    pub web_url: String,
    pub org: Option<String>,
    pub name: String,
    pub webhook_url: String,
    pub permissions: Vec<Permission>,
    pub listen: String,
    pub timeout: Duration,
    pub store: Store,
}

/// The App the flow made.
pub struct Created {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub owner: String,
    pub html_url: String,
    pub install_url: String,
    pub stored: Vec<Stored>,
}

struct Shared {
    plan: Plan,
    state: String,
    manifest: String,
    done: Mutex<Option<oneshot::Sender<Result<Created, String>>>>,
}

pub async fn run(plan: Plan, announce: impl FnOnce(&str)) -> Result<Created, String> {
    plan.store.precheck().await?;
    let listener = tokio::net::TcpListener::bind(&plan.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", plan.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", plan.listen))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--listen {addr}: the setup page serves only on a loopback address (127.0.0.1)"
        ));
    }
    let base = format!("http://{addr}");
    let manifest = github_app::manifest(
        &plan.name,
        "https://github.com/spotrunner/spotrunner",
        &plan.webhook_url,
        &format!("{base}/callback"),
        &plan.permissions,
    )
    .to_string();
    let (tx, rx) = oneshot::channel();
    let shared = Arc::new(Shared {
        plan,
        state: uuid::Uuid::new_v4().simple().to_string(),
        manifest,
        done: Mutex::new(Some(tx)),
    });
    let app = Router::new()
        .route("/", get(form))
        .route("/callback", get(callback))
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(
            host::Allowed::for_addr(addr),
            host::guard,
        ));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    announce(&format!("{base}/"));
    let outcome = tokio::time::timeout(shared.plan.timeout, rx).await;
    // Let the browser receive the last page before the server goes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.abort();
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the setup page stopped unexpectedly".into()),
        Err(_) => Err(format!(
            "no answer from GitHub within {} s: nothing was created or stored (run the command again)",
            shared.plan.timeout.as_secs()
        )),
    }
}

async fn form(State(s): State<Arc<Shared>>) -> Html<String> {
    let action = format!(
        "{}?state={}",
        github_app::new_app_url(&s.plan.web_url, s.plan.org.as_deref()),
        s.state
    );
    let owner = s.plan.org.as_deref().unwrap_or("your personal account");
    Html(page::form(&action, &s.manifest, owner, &s.plan.permissions))
}

async fn callback(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> (axum::http::StatusCode, Html<String>) {
    use axum::http::StatusCode;
    // A stray or forged request must not end the flow: only one whose state matches.
    if q.get("state") != Some(&s.state) {
        return (
            StatusCode::BAD_REQUEST,
            Html(page::failed(
                "this answer does not carry the state of the form this command served (a stale tab, or not from GitHub); nothing was stored",
            )),
        );
    }
    let Some(sender) = s.done.lock().unwrap().take() else {
        return (
            StatusCode::CONFLICT,
            Html(page::failed(
                "this App was already handled; see the terminal",
            )),
        );
    };
    let result = match q.get("code") {
        Some(code) => finish(&s.plan, code).await,
        None => Err(format!(
            "GitHub sent no code ({}): nothing was created",
            q.get("error")
                .map(String::as_str)
                .unwrap_or("no error given")
        )),
    };
    let (status, html) = match &result {
        Ok(c) => (
            StatusCode::OK,
            page::done(&c.name, c.id, &c.install_url, &c.stored),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, page::failed(e)),
    };
    let _ = sender.send(result);
    (status, Html(html))
}

/// Convert the code and store the App's credentials.
async fn finish(plan: &Plan, code: &str) -> Result<Created, String> {
    let app = spotrunner_github::convert_manifest(&plan.api_url, code)
        .await
        .map_err(|e| format!("converting GitHub's code into the App's credentials: {e}"))?;
    expect::check(
        &expect::Wanted {
            org: plan.org.as_deref(),
            name: &plan.name,
        },
        &plan.web_url,
        &app,
    )?;
    let created = |stored| Created {
        id: app.id,
        slug: app.slug.clone(),
        name: app.name.clone(),
        owner: app.owner.login.clone(),
        html_url: app.html_url.clone(),
        install_url: github_app::install_url(&plan.web_url, &app.slug),
        stored,
    };
    let lost = |e: String| {
        format!(
            "the App {} (id {}) exists, but {e}; generate a new private key at {} and store it, or delete the App and run this again",
            app.slug, app.id, app.html_url
        )
    };
    // GitHub generates the webhook secret when the manifest has a hook; if it
    // sent none (or a short one), make one and set it.
    let secret = match usable_secret(app.webhook_secret.as_deref()) {
        Some(s) => s.to_string(),
        None => {
            let secret = new_webhook_secret();
            let client =
                spotrunner_github::GitHubClient::new(spotrunner_github::ClientConfig::new(
                    plan.api_url.clone(),
                    spotrunner_github::Auth::App {
                        app_id: app.id.to_string(),
                        private_key_pem: app.pem.clone(),
                    },
                ))
                .map_err(|e| lost(format!("its key is unusable ({e})")))?;
            client
                .update_app_hook_config(Some(&plan.webhook_url), Some(&secret))
                .await
                .map_err(|e| lost(format!("setting its webhook secret failed ({e})")))?;
            secret
        }
    };
    let stored = plan.store.save(&app, &secret).await.map_err(lost)?;
    Ok(created(stored))
}

/// GitHub's webhook secret, if it is long enough to keep.
fn usable_secret(secret: Option<&str>) -> Option<&str> {
    secret.filter(|s| s.chars().count() >= MIN_WEBHOOK_SECRET_LEN)
}

/// 64 random hex digits (two v4 UUIDs: 244 random bits).
fn new_webhook_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_secret_is_kept_only_when_long_enough_and_a_made_one_is() {
        let made = new_webhook_secret();
        assert_eq!(made.len(), 64);
        assert!(made.len() >= MIN_WEBHOOK_SECRET_LEN);
        assert_ne!(made, new_webhook_secret());
        assert_eq!(usable_secret(Some(&made)), Some(made.as_str()));
        let github = "a".repeat(40);
        assert_eq!(usable_secret(Some(&github)), Some(github.as_str()));
        assert_eq!(usable_secret(Some(&"a".repeat(31))), None);
        assert_eq!(usable_secret(Some("")), None);
        assert_eq!(usable_secret(None), None);
    }
}
