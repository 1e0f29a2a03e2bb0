//! `spotrunner github-app`: create spotrunner's GitHub App from a manifest
//! (`create`), and point an existing App's webhook at a deployment (`webhook`).

mod create;
mod expect;
mod host;
mod page;
mod store;

use crate::Backend;
use spotrunner_core::Config;
use spotrunner_core::github_app::{self, Needs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum GitHubAppCommand {
    /// Create the App from a manifest in your browser, store its id, key and
    /// webhook secret (SSM SecureStrings on AWS, 0600 files locally) and print
    /// the installation link. The key is never printed.
    Create(CreateArgs),
    /// Point the App's webhook at URL and sign with the configuration's
    /// current webhook secret (`PATCH /app/hook/config`).
    Webhook(WebhookArgs),
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// The organisation that owns the App (default: your personal account).
    #[arg(long)]
    org: Option<String>,
    /// Where GitHub sends `workflow_job` events (Terraform output `webhook_url`).
    #[arg(long)]
    webhook_url: String,
    /// GitHub's REST API: https://api.github.com, or https://HOST/api/v3 for Enterprise Server.
    #[arg(long, default_value = spotrunner_github::PUBLIC_API_URL)]
    api_url: String,
    /// GitHub's web address (default: from --api-url).
    #[arg(long)]
    web_url: Option<String>,
    /// The App's name (unique on GitHub, ≤ 34 characters; default spotrunner-ORG).
    #[arg(long)]
    name: Option<String>,
    /// Where to store the credentials: `aws` (SSM under --ssm-prefix) or `local` (files in --out).
    #[arg(long, value_enum, default_value_t = Backend::Aws)]
    backend: Backend,
    /// The deployment's SSM prefix (Terraform's `/<prefix>`): writes
    /// PREFIX/github/app-id, PREFIX/github/app-private-key, PREFIX/webhook/secret.
    #[arg(long, default_value = "/sr")]
    ssm_prefix: String,
    /// KMS key for the SecureStrings (default: the account's aws/ssm key).
    #[arg(long)]
    kms_key_id: Option<String>,
    /// Local backend: the directory for app-id, app-private-key.pem, webhook-secret.
    #[arg(long, default_value = "spotrunner-secrets")]
    out: PathBuf,
    /// Replace credentials stored earlier.
    #[arg(long)]
    overwrite: bool,
    /// Derive the permissions from this configuration (pool scopes, re-runs).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Without --config: the pools register runners at repositories too
    /// (repository administration).
    #[arg(long)]
    repo_runners: bool,
    /// Without --config: never re-run interrupted jobs (actions read only).
    #[arg(long)]
    no_reruns: bool,
    /// Where the setup page listens (loopback only).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Give up when GitHub has not sent the browser back within SECS.
    #[arg(long, default_value_t = 900)]
    timeout_secs: u64,
}

#[derive(clap::Args)]
pub struct WebhookArgs {
    /// The configuration naming the App (github.auth) and the webhook secret (webhook.secrets[0]).
    #[arg(long, short, env = "SPOTRUNNER_CONFIG")]
    config: PathBuf,
    /// Where GitHub should send `workflow_job` events.
    #[arg(long)]
    url: String,
    /// Where `ssm:` references are read: `aws` (SSM) or `local` (file:/env: only).
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
}

pub async fn run(command: GitHubAppCommand) -> Result<ExitCode, String> {
    match command {
        GitHubAppCommand::Create(args) => create(args).await,
        GitHubAppCommand::Webhook(args) => webhook(args).await,
    }
}

fn needs(args: &CreateArgs) -> Result<Needs, String> {
    if let Some(path) = &args.config {
        let config = Config::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut n = Needs::of(&config);
        // A personal account has no organisation runners: its repositories' runners need administration.
        if args.org.is_none() {
            n.org_runners = false;
            n.repo_runners = true;
        }
        return Ok(n);
    }
    Ok(Needs {
        org_runners: args.org.is_some(),
        repo_runners: args.repo_runners || args.org.is_none(),
        reruns: !args.no_reruns,
    })
}

async fn create(args: CreateArgs) -> Result<ExitCode, String> {
    let permissions = github_app::permissions(needs(&args)?);
    if let Some(org) = &args.org
        && (org.is_empty() || !org.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!("--org {org:?}: not a GitHub organisation name"));
    }
    let name = args.name.clone().unwrap_or_else(|| {
        let mut n = format!("spotrunner-{}", args.org.as_deref().unwrap_or("runners"));
        n.truncate(34);
        n
    });
    if name.is_empty() || name.chars().count() > 34 {
        return Err(format!(
            "--name {name:?}: a GitHub App name has 1 to 34 characters"
        ));
    }
    let url = reqwest::Url::parse(&args.webhook_url)
        .map_err(|e| format!("--webhook-url {:?}: {e}", args.webhook_url))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!(
            "--webhook-url {:?}: must be an http(s) URL",
            args.webhook_url
        ));
    }
    let store = match args.backend {
        Backend::Aws => {
            let sdk = spotrunner_aws::sdk::load().await;
            store::Store::Ssm {
                client: aws_sdk_ssm::Client::new(&sdk),
                prefix: args.ssm_prefix.clone(),
                kms_key_id: args.kms_key_id.clone(),
                overwrite: args.overwrite,
            }
        }
        Backend::Local => store::Store::Files {
            dir: args.out.clone(),
            overwrite: args.overwrite,
        },
    };
    let web_url = args
        .web_url
        .clone()
        .unwrap_or_else(|| github_app::web_url_for(&args.api_url));
    let plan = create::Plan {
        api_url: args.api_url.clone(),
        web_url,
        org: args.org.clone(),
        name,
        webhook_url: args.webhook_url.clone(),
        permissions,
        listen: args.listen.clone(),
        timeout: Duration::from_secs(args.timeout_secs),
        store,
    };
    let created = create::run(plan, |page| {
        println!(
            "Open this page in a browser on this machine and press \"Create the App on GitHub\":"
        );
        println!("  {page}");
        println!(
            "(waiting up to {} s for GitHub to send you back)",
            args.timeout_secs
        );
    })
    .await?;
    println!(
        "Created GitHub App {} (id {}, owner {}): {}",
        created.slug, created.id, created.owner, created.html_url
    );
    for s in &created.stored {
        println!("  stored the {}: {} ({})", s.what, s.reference, s.kind);
    }
    println!("Install it on the accounts whose jobs spotrunner runs:");
    println!("  {}", created.install_url);
    match args.backend {
        Backend::Aws => println!(
            "Then check the deployment: spotrunner doctor --backend aws --config-parameter {}/config --webhook-url {}",
            format_args!("/{}", args.ssm_prefix.trim_matches('/')),
            args.webhook_url
        ),
        Backend::Local => {
            let r = |i: usize| {
                created
                    .stored
                    .get(i)
                    .map(|s| s.reference.as_str())
                    .unwrap_or("")
            };
            println!("In the configuration:");
            println!(
                "  [github]\n  auth = {{ type = \"app\", app_id = {}, private_key = \"{}\" }}\n  [webhook]\n  secrets = [\"{}\"]",
                created.id,
                r(1),
                r(2)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn webhook(args: WebhookArgs) -> Result<ExitCode, String> {
    let config =
        Config::from_path(&args.config).map_err(|e| format!("{}: {e}", args.config.display()))?;
    let store: Option<Box<dyn spotrunner_core::ports::SecretStore>> = match args.backend {
        Backend::Aws => Some(Box::new(spotrunner_aws::ssm::SsmSecretStore::new(
            &spotrunner_aws::sdk::load().await,
        ))),
        Backend::Local => None,
    };
    let client = spotrunner_github::client_from_config(&config.github, store.as_deref()).await?;
    let secret_ref = config
        .webhook
        .secrets
        .first()
        .ok_or("webhook.secrets: must name the current secret")?;
    let secret = spotrunner_core::ports::resolve_secret(store.as_deref(), secret_ref)
        .await
        .map_err(|e| format!("webhook.secrets[0] ({secret_ref}): {e}"))?;
    let hook = client
        .update_app_hook_config(Some(&args.url), Some(&secret))
        .await
        .map_err(|e| format!("setting the App's webhook: {e}"))?;
    println!(
        "The App's webhook now sends to {} (content type {}), signed with {secret_ref}.",
        hook.url.as_deref().unwrap_or("?"),
        hook.content_type.as_deref().unwrap_or("?")
    );
    Ok(ExitCode::SUCCESS)
}
