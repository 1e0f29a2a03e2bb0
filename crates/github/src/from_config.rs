//! Building a client from the configuration document's `github` section.

use crate::{Auth, ClientConfig, GitHubClient};
use spotrunner_core::config::{GitHubAuth, GitHubConfig};
use spotrunner_core::ports::{SecretStore, resolve_secret};

/// Resolve the App key or PAT (once: call this at cold start) and build the client.
pub async fn client_from_config(
    config: &GitHubConfig,
    store: Option<&dyn SecretStore>,
) -> Result<GitHubClient, String> {
    let auth = match &config.auth {
        GitHubAuth::App {
            app_id,
            private_key,
        } => Auth::App {
            app_id: app_id.to_string(),
            private_key_pem: resolve_secret(store, private_key)
                .await
                .map_err(|e| format!("github.auth.private_key ({private_key}): {e}"))?,
        },
        GitHubAuth::Pat { token } => Auth::Pat {
            token: resolve_secret(store, token)
                .await
                .map_err(|e| format!("github.auth.token ({token}): {e}"))?,
        },
    };
    GitHubClient::new(ClientConfig::new(config.api_url.clone(), auth))
        .map_err(|e| format!("github: {e}"))
}
