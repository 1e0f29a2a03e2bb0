use super::PortError;
use crate::config::SecretRef;
use async_trait::async_trait;

/// A store of secrets by name (SSM SecureString on AWS).
#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get_secret(&self, name: &str) -> Result<String, PortError>;
}

/// The value behind a [`SecretRef`]: `ssm:` goes to the store, the rest are local.
pub async fn resolve_secret(
    store: Option<&dyn SecretStore>,
    r: &SecretRef,
) -> Result<String, PortError> {
    match r {
        SecretRef::Ssm(name) => match store {
            Some(store) => store.get_secret(name).await,
            None => Err(PortError::rejected(
                "secrets",
                format!("{r} needs an SSM store, and none is configured"),
            )),
        },
        SecretRef::Env(var) => std::env::var(var).map_err(|_| PortError::NotFound {
            service: "env",
            what: format!("environment variable {var}"),
        }),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| PortError::NotFound {
                service: "file",
                what: format!("{path} ({e})"),
            }),
        SecretRef::Value(v) => Ok(v.clone()),
    }
}
