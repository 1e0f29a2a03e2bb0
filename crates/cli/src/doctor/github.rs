//! The GitHub side of the doctor: credentials, the App, its installations,
//! permissions and webhook, and recent deliveries.

use super::report::Check;
use spotrunner_core::Config;
use spotrunner_core::ports::SecretStore;

pub async fn checks(
    config: &Config,
    store: Option<&dyn SecretStore>,
    webhook_url: Option<&str>,
) -> Vec<Check> {
    let _ = (config, store, webhook_url);
    Vec::new()
}
