//! The GitHub App itself: creating it from a manifest (the code GitHub hands
//! back, converted into the App's credentials), and what `spotrunner doctor`
//! reads of it with an App JWT — the App, its installations and its webhook
//! configuration.

use crate::client::{GitHubClient, Reply, SERVICE};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;
use spotrunner_core::ports::PortError;
use std::collections::BTreeMap;
use std::fmt;

/// A created App's credentials (`POST /app-manifests/{code}/conversions`).
/// `Debug` never shows the key or the secrets.
#[derive(Clone, Deserialize)]
pub struct AppCredentials {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub html_url: String,
    pub owner: Account,
    pub pem: String,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("id", &self.id)
            .field("slug", &self.slug)
            .field("owner", &self.owner.login)
            .finish_non_exhaustive()
    }
}

/// A user or an organisation.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub login: String,
    /// `User` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// `GET /app`.
#[derive(Clone, Debug, Deserialize)]
pub struct AppInfo {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub html_url: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<String>,
}

/// One entry of `GET /app/installations`.
#[derive(Clone, Debug, Deserialize)]
pub struct InstallationInfo {
    pub id: u64,
    pub account: Account,
    #[serde(default)]
    pub permissions: BTreeMap<String, String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub suspended_at: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// `GET /app/hook/config`. GitHub masks the secret (`********`): whether one
/// is set is all it tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookConfig {
    pub url: Option<String>,
    pub content_type: Option<String>,
    pub insecure_ssl: Option<String>,
    pub secret_set: bool,
}

/// Trade the code of GitHub's manifest redirect for the App's credentials.
/// No authentication: the code is the credential (one use, one hour).
pub async fn convert_manifest(api_url: &str, code: &str) -> Result<AppCredentials, PortError> {
    if code.is_empty()
        || !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(PortError::rejected(
            SERVICE,
            format!("invalid manifest code {code:?}"),
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| PortError::unavailable(SERVICE, e.to_string()))?;
    let url = format!(
        "{}/app-manifests/{code}/conversions",
        api_url.trim_end_matches('/')
    );
    let resp = http
        .post(&url)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", crate::API_VERSION)
        .header("user-agent", crate::DEFAULT_USER_AGENT)
        .send()
        .await
        .map_err(|e| PortError::unavailable(SERVICE, format!("POST {url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| PortError::unavailable(SERVICE, format!("POST {url}: {e}")))?;
    match status.as_u16() {
        201 | 200 => serde_json::from_slice(&body).map_err(|e| {
            PortError::unavailable(
                SERVICE,
                format!("unexpected answer to the manifest conversion: {e}"),
            )
        }),
        404 => Err(PortError::NotFound {
            service: SERVICE,
            what: "manifest code (used already, or older than an hour)".into(),
        }),
        code => Err(PortError::rejected(
            SERVICE,
            format!(
                "manifest conversion answered {code}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        )),
    }
}

impl GitHubClient {
    async fn app_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, PortError> {
        if !self.is_app() {
            return Err(PortError::rejected(
                SERVICE,
                "this needs GitHub App auth (an App JWT); the configuration uses a personal access token",
            ));
        }
        let jwt = self.jwt()?;
        self.send(method, path, &jwt, body).await
    }

    /// `GET /app`: the App the key signs for.
    pub async fn get_app(&self) -> Result<AppInfo, PortError> {
        let reply = self.app_call(Method::GET, "/app", None).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, "the App (GET /app)"));
        }
        reply.json("GET /app")
    }

    /// Every installation of the App (`GET /app/installations`, all pages).
    pub async fn app_installations(&self) -> Result<Vec<InstallationInfo>, PortError> {
        let mut out = Vec::new();
        for page in 1..=100u32 {
            let path = format!("/app/installations?per_page=100&page={page}");
            let reply = self.app_call(Method::GET, &path, None).await?;
            if !reply.status.is_success() {
                return Err(self.error_for(&reply, "the App's installations"));
            }
            let items: Vec<InstallationInfo> = reply.json("GET /app/installations")?;
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /app/hook/config`.
    pub async fn app_hook_config(&self) -> Result<HookConfig, PortError> {
        let reply = self.app_call(Method::GET, "/app/hook/config", None).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, "the App's webhook configuration"));
        }
        let v: Value = reply.json("GET /app/hook/config")?;
        Ok(hook_config(&v))
    }

    /// `PATCH /app/hook/config`: point the App's webhook at `url` and/or sign
    /// with `secret` (content type JSON, TLS verified).
    pub async fn update_app_hook_config(
        &self,
        url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<HookConfig, PortError> {
        let mut body = serde_json::json!({ "content_type": "json", "insecure_ssl": "0" });
        if let Some(u) = url {
            body["url"] = Value::from(u);
        }
        if let Some(s) = secret {
            body["secret"] = Value::from(s);
        }
        let reply = self
            .app_call(Method::PATCH, "/app/hook/config", Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, "the App's webhook configuration"));
        }
        let v: Value = reply.json("PATCH /app/hook/config")?;
        Ok(hook_config(&v))
    }
}

fn hook_config(v: &Value) -> HookConfig {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    HookConfig {
        url: s("url").filter(|u| !u.is_empty()),
        content_type: s("content_type"),
        insecure_ssl: s("insecure_ssl").or_else(|| {
            v.get("insecure_ssl")
                .and_then(Value::as_u64)
                .map(|n| n.to_string())
        }),
        secret_set: s("secret").is_some_and(|x| !x.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_secret_only_says_one_is_set() {
        let c = hook_config(&serde_json::json!({
            "content_type": "json", "insecure_ssl": "0", "secret": "********", "url": "https://x/webhook"
        }));
        assert!(c.secret_set);
        assert_eq!(c.url.as_deref(), Some("https://x/webhook"));
        let none = hook_config(&serde_json::json!({"url": "", "secret": null}));
        assert!(!none.secret_set && none.url.is_none());
    }

    #[test]
    fn credentials_never_debug_print_their_secrets() {
        let c: AppCredentials = serde_json::from_value(serde_json::json!({
            "id": 1, "slug": "s", "name": "n", "html_url": "h",
            "owner": {"login": "o", "type": "Organization"},
            "pem": "-----BEGIN KEY-----SECRETPEM", "webhook_secret": "WHSECRET",
            "client_id": "cid", "client_secret": "CSECRET"
        }))
        .unwrap();
        let d = format!("{c:?}");
        assert!(
            !d.contains("SECRETPEM") && !d.contains("WHSECRET") && !d.contains("CSECRET"),
            "{d}"
        );
    }
}
