//! The core handlers for one configuration, wired to one backend's ports. A
//! reload builds a new set and swaps it in; the ports (and so the state) stay.

use crate::adapters::{Adapters, runner_settings};
use crate::config_file;
use spotrunner_core::Config;
use spotrunner_core::create_runner::{CreateRunner, Settings};
use spotrunner_core::janitor::{Janitor, JanitorSettings};
use spotrunner_core::ports::{GitHubApi, JobStateSink, resolve_secret};
use spotrunner_core::recovery::{Redelivery, Sweep};
use spotrunner_core::stop_runner::StopRunner;
use spotrunner_core::webhook::{
    DEFAULT_SECRET_REFRESH, SecretRefs, WebhookSecrets, WebhookService,
};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Handlers {
    pub config: Arc<Config>,
    pub create_runner: CreateRunner,
    pub webhook: Arc<WebhookService>,
    pub stop_runner: StopRunner,
    pub janitor: Janitor,
    /// The nets under the webhook: redelivery of failed deliveries, and the
    /// sweep for queued jobs never delivered (`Schedule::Redelivery`, `Schedule::Sweep`).
    pub redelivery: Arc<Redelivery>,
    pub sweep: Arc<Sweep>,
}

/// The "SSM document" of local runner processes, as named in their exit events.
pub const LOCAL_DOCUMENT: &str = "spotrunner-local";

/// Resolve secrets and the GitHub client for `config`, then build the handlers.
/// Fails (naming the field) without touching anything: a reload keeps the old set.
pub async fn build(config: Config, adapters: &Adapters) -> Result<Handlers, String> {
    let store = adapters.secrets.as_deref();
    let mut secrets = Vec::new();
    for (i, r) in config.webhook.secrets.iter().enumerate() {
        let v = resolve_secret(store, r)
            .await
            .map_err(|e| format!("webhook.secrets[{i}] ({r}): {e}"))?;
        secrets.push(v);
    }
    let github = spotrunner_github::client_from_config(&config.github, store).await?;
    let local = config_file::local(&config);
    let mut settings = Settings::for_deployment(&config.deployment);
    settings.first_bootstrap_delay = adapters.first_bootstrap_delay;
    if let Some(st) = &adapters.local {
        settings.claim_lease = chrono::Duration::seconds(local.claim_lease_secs as i64);
        // Local runners start in milliseconds: retry a full pool soon (1, 2, 4 s …).
        settings.defer_base = Duration::from_secs(1);
        settings.busy_retry = Duration::from_secs(local.claim_lease_secs.clamp(1, 30));
        write_startup_scripts(&config, st.backend.bucket_dir())?;
        // Last: nothing after this can fail, so a refused reload changes nothing.
        st.backend.set_settings(runner_settings(&config));
    }
    let config = Arc::new(config);
    let client = Arc::new(github);
    let github: Arc<dyn GitHubApi> = client.clone();
    let document = match &adapters.local {
        Some(_) => LOCAL_DOCUMENT.to_string(),
        None => std::env::var("SPOTRUNNER_SSM_DOCUMENT")
            .unwrap_or_else(|_| crate::adapters::default_ssm_document(&config.deployment)),
    };
    let stop_runner = StopRunner {
        config: config.clone(),
        document,
        ledger: adapters.ledger.clone(),
        github: github.clone(),
        compute: adapters.compute.clone(),
        parameters: adapters.parameters.clone(),
        jobs_queue: adapters.jobs_queue.clone(),
    };
    let janitor = Janitor {
        config: config.clone(),
        settings: JanitorSettings::for_deployment(&config.deployment),
        ledger: adapters.ledger.clone(),
        github: github.clone(),
        compute: adapters.compute.clone(),
        parameters: adapters.parameters.clone(),
        jobs_queue: adapters.jobs_queue.clone(),
    };
    let create_runner = CreateRunner {
        config: config.clone(),
        settings,
        ledger: adapters.ledger.clone(),
        github,
        compute: adapters.compute.clone(),
        parameters: adapters.parameters.clone(),
        commands: adapters.commands.clone(),
        bootstrap_queue: adapters.bootstrap_queue.clone(),
        jobs_queue: adapters.jobs_queue.clone(),
    };
    let sink: Arc<dyn JobStateSink> = adapters.ledger.clone();
    // A secret rotated in its file, variable or SSM parameter is read again on
    // the first signature that matches none (at most every 30 s).
    let source = SecretRefs::new(config.webhook.secrets.clone(), adapters.secrets.clone());
    let webhook = WebhookService::new(
        config.clone(),
        WebhookSecrets::new(&secrets),
        adapters.jobs_queue.clone(),
        sink,
    );
    let webhook = Arc::new(webhook.with_secrets_source(Arc::new(source), DEFAULT_SECRET_REFRESH));
    let redelivery = Redelivery {
        config: config.recovery.redelivery.clone(),
        hook: config.recovery.redelivery.hook(&config.github.auth),
        deliveries: client.clone(),
        ledger: adapters.ledger.clone(),
    };
    redelivery.warn_if_inactive();
    let sweep = Sweep {
        config: config.clone(),
        source: client,
        ledger: adapters.ledger.clone(),
        queue: adapters.jobs_queue.clone(),
    };
    Ok(Handlers {
        config,
        create_runner,
        webhook,
        stop_runner,
        janitor,
        redelivery: Arc::new(redelivery),
        sweep: Arc::new(sweep),
    })
}

/// Where bootstrap.sh's `aws s3 cp s3://BUCKET/startup/POOL.sh` finds each
/// pool's startup script in local mode.
fn write_startup_scripts(config: &Config, bucket: &std::path::Path) -> Result<(), String> {
    let dir = bucket.join("startup");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for pool in &config.pools {
        if let Some(script) = &pool.startup_script {
            let path = dir.join(format!("{}.sh", pool.name));
            std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}
