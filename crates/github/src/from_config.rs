//! Building a client from the configuration document's `github` section.

use crate::{Auth, ClientConfig, GitHubClient};
use spotrunner_core::config::{AppId, GitHubAuth, GitHubConfig};
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
            app_id: match app_id {
                AppId::Id(n) => n.to_string(),
                AppId::Ref(r) => {
                    let text = resolve_secret(store, r)
                        .await
                        .map_err(|e| format!("github.auth.app_id ({r}): {e}"))?;
                    AppId::parse_stored(&text)
                        .map_err(|e| format!("github.auth.app_id ({r}): {e}"))?
                        .to_string()
                }
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use spotrunner_core::config::SecretRef;

    fn app(app_id: AppId) -> GitHubConfig {
        GitHubConfig {
            api_url: "http://127.0.0.1:9".into(),
            auth: GitHubAuth::App {
                app_id,
                private_key: SecretRef::Env("SPOTRUNNER_TEST_FROM_CONFIG_KEY".into()),
            },
        }
    }

    #[tokio::test]
    async fn an_app_id_reference_is_resolved_and_checked() {
        // SAFETY: only these tests read these variables.
        unsafe {
            std::env::set_var(
                "SPOTRUNNER_TEST_FROM_CONFIG_KEY",
                include_str!("../../../testdata/github/test-app-key.pem"),
            );
            std::env::set_var("SPOTRUNNER_TEST_FROM_CONFIG_ID", " 4242\n");
            std::env::set_var("SPOTRUNNER_TEST_FROM_CONFIG_BAD", "x");
        }
        let ok = app(AppId::Ref(SecretRef::Env(
            "SPOTRUNNER_TEST_FROM_CONFIG_ID".into(),
        )));
        let client = client_from_config(&ok, None).await;
        assert!(client.is_ok(), "{:?}", client.err());
        let bad = app(AppId::Ref(SecretRef::Env(
            "SPOTRUNNER_TEST_FROM_CONFIG_BAD".into(),
        )));
        let e = client_from_config(&bad, None).await.unwrap_err();
        assert!(
            e.contains("github.auth.app_id (env:SPOTRUNNER_TEST_FROM_CONFIG_BAD)")
                && e.contains("positive whole number"),
            "{e}"
        );
        let missing = app(AppId::Ref(SecretRef::Env(
            "SPOTRUNNER_TEST_FROM_CONFIG_UNSET".into(),
        )));
        let e = client_from_config(&missing, None).await.unwrap_err();
        assert!(e.contains("github.auth.app_id"), "{e}");
    }
}
