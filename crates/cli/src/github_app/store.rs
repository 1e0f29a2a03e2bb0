//! Where `github-app create` keeps a new App's id, private key and webhook
//! secret: SSM parameters under the deployment's prefix (the names the
//! Terraform module reads), or 0600 files for the local mode. Never printed.

use aws_sdk_ssm::types::ParameterType;
use spotrunner_github::AppCredentials;
use std::path::PathBuf;

/// One stored item: where it went and how (for the summary; never the value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub what: &'static str,
    /// The reference a configuration uses: `ssm:/sr/github/app-id`, `file:/…`.
    pub reference: String,
    pub kind: &'static str,
}

pub enum Store {
    Ssm {
        client: aws_sdk_ssm::Client,
        prefix: String,
        kms_key_id: Option<String>,
        overwrite: bool,
    },
    Files {
        dir: PathBuf,
        overwrite: bool,
    },
}

/// (what, name under the prefix or file name, secret?)
const ITEMS: [(&str, &str, &str, bool); 3] = [
    ("App id", "/github/app-id", "app-id", false),
    (
        "private key",
        "/github/app-private-key",
        "app-private-key.pem",
        true,
    ),
    ("webhook secret", "/webhook/secret", "webhook-secret", true),
];

impl Store {
    fn ssm_name(prefix: &str, suffix: &str) -> String {
        format!("/{}{suffix}", prefix.trim_matches('/'))
    }

    /// Refuse before the App exists if something would be overwritten.
    pub async fn precheck(&self) -> Result<(), String> {
        match self {
            Store::Ssm {
                client,
                prefix,
                overwrite: false,
                ..
            } => {
                for (what, suffix, _, _) in ITEMS {
                    let name = Self::ssm_name(prefix, suffix);
                    match client.get_parameter().name(&name).send().await {
                        Ok(_) => {
                            return Err(format!(
                                "SSM parameter {name} (the {what}) exists already: pass --overwrite to replace it, or --ssm-prefix for another deployment"
                            ));
                        }
                        Err(e) if spotrunner_aws::error::code(&e) == Some("ParameterNotFound") => {}
                        Err(e) => {
                            return Err(format!(
                                "cannot read SSM parameter {name}: {}",
                                spotrunner_aws::error::classify("ssm", &name, e, &[])
                            ));
                        }
                    }
                }
                Ok(())
            }
            Store::Files {
                dir,
                overwrite: false,
            } => {
                for (what, _, file, _) in ITEMS {
                    let path = dir.join(file);
                    if path.exists() {
                        return Err(format!(
                            "{} (the {what}) exists already: pass --overwrite to replace it",
                            path.display()
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Store the App's id, key and webhook secret.
    pub async fn save(
        &self,
        app: &AppCredentials,
        webhook_secret: &str,
    ) -> Result<Vec<Stored>, String> {
        let id = app.id.to_string();
        let values = [id.as_str(), app.pem.as_str(), webhook_secret];
        let mut out = Vec::new();
        for ((what, suffix, file, secret), value) in ITEMS.into_iter().zip(values) {
            match self {
                Store::Ssm {
                    client,
                    prefix,
                    kms_key_id,
                    overwrite,
                } => {
                    let name = Self::ssm_name(prefix, suffix);
                    let mut put = client
                        .put_parameter()
                        .name(&name)
                        .value(value)
                        .overwrite(*overwrite)
                        .description(format!("spotrunner: the GitHub App's {what}"));
                    if secret {
                        put = put.r#type(ParameterType::SecureString);
                        if let Some(k) = kms_key_id {
                            put = put.key_id(k);
                        }
                    } else {
                        put = put.r#type(ParameterType::String);
                    }
                    put.send().await.map_err(|e| {
                        format!(
                            "cannot store the {what} as SSM parameter {name}: {}",
                            spotrunner_aws::error::classify("ssm", &name, e, &[])
                        )
                    })?;
                    out.push(Stored {
                        what,
                        reference: format!("ssm:{name}"),
                        kind: if secret { "SecureString" } else { "String" },
                    });
                }
                Store::Files { dir, .. } => {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    let path = dir.join(file);
                    write_private(&path, value)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                    let abs = std::fs::canonicalize(&path).unwrap_or(path);
                    out.push(Stored {
                        what,
                        reference: format!("file:{}", abs.display()),
                        kind: "file, mode 0600",
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Write `value` to a file only its owner can read (created so, never widened).
fn write_private(path: &std::path::Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(value.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn creds() -> AppCredentials {
        serde_json::from_value(serde_json::json!({
            "id": 77, "slug": "s", "name": "n", "html_url": "h",
            "owner": {"login": "o", "type": "Organization"},
            "pem": "PEM", "webhook_secret": "W", "client_id": "c", "client_secret": "cs"
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn files_are_private_and_never_overwritten_without_asking() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Files {
            dir: dir.path().to_path_buf(),
            overwrite: false,
        };
        store.precheck().await.unwrap();
        let stored = store.save(&creds(), "W").await.unwrap();
        assert_eq!(stored.len(), 3);
        assert!(stored[1].reference.starts_with("file:/"), "{stored:?}");
        let key = dir.path().join("app-private-key.pem");
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "PEM");
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("app-id")).unwrap(),
            "77"
        );
        let e = store.precheck().await.unwrap_err();
        assert!(e.contains("app-id") && e.contains("--overwrite"), "{e}");
    }
}
