//! [`HookDeliveries`] on the REST API: a webhook's delivery log and redelivery.
//!
//! - [`HookRef::App`]: `/app/hook/deliveries…` with an App JWT (a PAT cannot
//!   read the App's hook: `Rejected`).
//! - [`HookRef::Org`] / [`HookRef::Repo`]: `/orgs/{org}/hooks/{id}/deliveries…`,
//!   `/repos/{o}/{r}/hooks/{id}/deliveries…` with the PAT or an installation
//!   token for that organisation or repository.
//!
//! Pages are `per_page=100`, newest first; the next page's `cursor` is the
//! `cursor` query value of the `Link: <…>; rel="next"` target.

use crate::PER_PAGE;
use crate::client::{GitHubClient, Reply, SERVICE, segment};
use crate::ratelimit::next_link;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use spotrunner_core::ports::{
    DeliveryPage, GitHubTarget, HookDeliveries, HookDelivery, HookRef, PortError, RunnerScope,
};

/// One `hook-delivery-item` as GitHub lists it.
#[derive(Deserialize)]
struct DeliveryAnswer {
    id: u64,
    guid: String,
    delivered_at: DateTime<Utc>,
    #[serde(default)]
    redelivery: bool,
    #[serde(default)]
    status_code: Option<u16>,
    event: String,
    #[serde(default)]
    action: Option<String>,
}

impl From<DeliveryAnswer> for HookDelivery {
    fn from(d: DeliveryAnswer) -> Self {
        HookDelivery {
            id: d.id,
            guid: d.guid,
            delivered_at: d.delivered_at,
            redelivery: d.redelivery,
            status_code: d.status_code.unwrap_or(0),
            event: d.event,
            action: d.action,
        }
    }
}

/// `…/deliveries` of `hook`.
fn deliveries_path(hook: &HookRef) -> Result<String, PortError> {
    Ok(match hook {
        HookRef::App => "/app/hook/deliveries".to_string(),
        HookRef::Org { org, id } => {
            format!(
                "/orgs/{}/hooks/{id}/deliveries",
                segment(org, "organisation")?
            )
        }
        HookRef::Repo { owner, repo, id } => format!(
            "/repos/{}/{}/hooks/{id}/deliveries",
            segment(owner, "owner")?,
            segment(repo, "repository")?
        ),
    })
}

/// The `cursor` query value of a `Link` header's `rel="next"` target.
pub(crate) fn next_cursor(link: &str) -> Option<String> {
    let next = next_link(link)?;
    let url = reqwest::Url::parse(next).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl GitHubClient {
    /// One call on `hook`'s routes with the credential it needs.
    async fn hook_call(
        &self,
        hook: &HookRef,
        method: Method,
        url_or_path: &str,
    ) -> Result<Reply, PortError> {
        let scope = match hook {
            HookRef::App => {
                if !self.is_app() {
                    return Err(PortError::rejected(
                        SERVICE,
                        "the GitHub App's webhook deliveries need GitHub App auth (an App JWT); \
                         with a personal access token only organisation or repository hooks can be read",
                    ));
                }
                let jwt = self.jwt()?;
                return self.send(method, url_or_path, &jwt, None).await;
            }
            HookRef::Org { org, .. } => RunnerScope::Org { org: org.clone() },
            HookRef::Repo { owner, repo, .. } => RunnerScope::Repo {
                owner: owner.clone(),
                repo: repo.clone(),
            },
        };
        let target = GitHubTarget {
            scope,
            installation_id: None,
        };
        self.authed(&target, method, url_or_path, None).await
    }
}

#[async_trait]
impl HookDeliveries for GitHubClient {
    async fn list_deliveries(
        &self,
        hook: &HookRef,
        cursor: Option<&str>,
    ) -> Result<DeliveryPage, PortError> {
        let path = deliveries_path(hook)?;
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.api_url()))
            .map_err(|e| PortError::rejected(SERVICE, format!("deliveries URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string());
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let what = format!("deliveries of the {hook}");
        let reply = self.hook_call(hook, Method::GET, url.as_str()).await?;
        if !reply.status.is_success() {
            return Err(self.error_for(&reply, &what));
        }
        let items: Vec<DeliveryAnswer> = reply.json(&what)?;
        let next_cursor = reply
            .headers
            .get(LINK)
            .and_then(|l| l.to_str().ok())
            .and_then(next_cursor);
        Ok(DeliveryPage {
            deliveries: items.into_iter().map(Into::into).collect(),
            next_cursor,
        })
    }

    async fn redeliver(&self, hook: &HookRef, delivery_id: u64) -> Result<(), PortError> {
        let path = format!("{}/{delivery_id}/attempts", deliveries_path(hook)?);
        let what = format!("delivery {delivery_id} of the {hook}");
        let reply = self.hook_call(hook, Method::POST, &path).await?;
        if reply.status.is_success() {
            tracing::info!(%hook, delivery_id, "asked GitHub to redeliver");
            return Ok(());
        }
        if reply.status == StatusCode::NOT_FOUND {
            return Err(PortError::NotFound {
                service: SERVICE,
                what,
            });
        }
        Err(self.error_for(&reply, &what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_comes_from_the_next_link() {
        let link = "<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel=\"next\"";
        assert_eq!(next_cursor(link).as_deref(), Some("v1_12077215967"));
        let encoded = "<https://h/api/v3/app/hook/deliveries?cursor=a%2Bb%3D&per_page=2>; rel=\"next\", \
                       <https://h/api/v3/app/hook/deliveries?cursor=z>; rel=\"prev\"";
        assert_eq!(next_cursor(encoded).as_deref(), Some("a+b="));
        let prev_only = "<https://h/app/hook/deliveries?cursor=z>; rel=\"prev\"";
        assert_eq!(next_cursor(prev_only), None);
        assert_eq!(
            next_cursor("<https://h/app/hook/deliveries?page=2>; rel=\"next\""),
            None
        );
    }

    #[test]
    fn hook_paths_check_their_names() {
        assert_eq!(
            deliveries_path(&HookRef::Org {
                org: "acme".into(),
                id: 7
            })
            .unwrap(),
            "/orgs/acme/hooks/7/deliveries"
        );
        let bad = HookRef::Repo {
            owner: "a/b".into(),
            repo: "r".into(),
            id: 1,
        };
        assert!(matches!(
            deliveries_path(&bad),
            Err(PortError::Rejected { .. })
        ));
    }

    #[test]
    fn a_delivery_without_status_code_did_not_answer() {
        let d: DeliveryAnswer = serde_json::from_str(
            r#"{"id":1,"guid":"g","delivered_at":"2019-06-03T00:57:16Z","redelivery":false,
                "duration":0.27,"status":"failed to connect","status_code":null,
                "event":"workflow_job","action":null,"installation_id":null,"repository_id":null}"#,
        )
        .unwrap();
        let d = HookDelivery::from(d);
        assert_eq!(d.status_code, 0);
        assert!(!d.succeeded());
        assert_eq!(d.delivered_at.to_rfc3339(), "2019-06-03T00:57:16+00:00");
    }
}
