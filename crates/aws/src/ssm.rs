//! Secrets in SSM Parameter Store (SecureString).

use crate::error::classify;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssm::Client;
use spotrunner_core::ports::{PortError, SecretStore};

/// Reads SecureString parameters, decrypted. Values are never logged.
#[derive(Clone)]
pub struct SsmSecretStore {
    client: Client,
}

impl SsmSecretStore {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            client: Client::new(sdk),
        }
    }

    /// Up to 10 parameters in one `GetParameters` call, decrypted: name →
    /// value for those that exist (a missing name is simply absent).
    pub async fn get_many(
        &self,
        names: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, PortError> {
        let out = self
            .client
            .get_parameters()
            .set_names(Some(names.to_vec()))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| classify("ssm", &format!("parameters {}", names.join(", ")), e, &[]))?;
        Ok(out
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| Some((p.name?, p.value?)))
            .collect())
    }
}

#[async_trait]
impl SecretStore for SsmSecretStore {
    async fn get_secret(&self, name: &str) -> Result<String, PortError> {
        let out = self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                classify(
                    "ssm",
                    &format!("parameter {name}"),
                    e,
                    &["ParameterNotFound"],
                )
            })?;
        out.parameter
            .and_then(|p| p.value)
            .ok_or_else(|| PortError::NotFound {
                service: "ssm",
                what: format!("value of parameter {name}"),
            })
    }
}
