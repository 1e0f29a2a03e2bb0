//! `spotrunner doctor`: does it all fit together? A checklist of the GitHub
//! side (credentials, the App's installations, permissions and webhook, recent
//! deliveries) and of the backend (locally the runner command and the state
//! directory; on AWS the configuration parameter, the SSM document, launch
//! templates, subnets, the instance profile, the queues and the ledger), each
//! failure with its fix. Exit status 1 when any check failed.

pub mod aws;
pub mod exposure;
pub mod github;
pub mod local;
pub mod report;

use crate::Backend;
use report::{Check, Report};
use spotrunner_core::Config;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Clone, Debug)]
pub struct DoctorArgs {
    /// The configuration document (JSON or TOML). On AWS, without it, the
    /// deployed document is read from `--config-parameter`.
    #[arg(long, short, env = "SPOTRUNNER_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
    /// State directory of the local backend.
    #[arg(long, env = "SPOTRUNNER_STATE_DIR", default_value = "spotrunner-state")]
    pub state_dir: PathBuf,
    /// The SSM parameter holding the deployed configuration (Terraform output
    /// `config_parameter`).
    #[arg(long, env = "SPOTRUNNER_CONFIG_PARAMETER")]
    pub config_parameter: Option<String>,
    /// Our webhook URL (Terraform output `webhook_url`; locally serve's public
    /// URL): the App's webhook must point at it.
    #[arg(long, env = "SPOTRUNNER_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: DoctorArgs) -> Result<ExitCode, String> {
    let mut report = Report::default();
    let sdk = match args.backend {
        Backend::Aws => Some(spotrunner_aws::sdk::load().await),
        Backend::Local => None,
    };
    let config = load_config(&args, sdk.as_ref(), &mut report).await;
    if let Some(config) = &config {
        report.extend(exposure::config_checks(config));
        match (&sdk, args.backend) {
            (Some(sdk), Backend::Aws) => {
                report.extend(aws::checks(sdk, config, &spotrunner_aws::runtime::ProcessEnv).await)
            }
            _ => report.extend(local::checks(config, &args.state_dir)),
        }
        let store: Option<Box<dyn spotrunner_core::ports::SecretStore>> = sdk
            .as_ref()
            .map(|s| Box::new(spotrunner_aws::ssm::SsmSecretStore::new(s)) as _);
        report.extend(github::checks(config, store.as_deref(), args.webhook_url.as_deref()).await);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.render());
    }
    Ok(if report.failed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The configuration: the file if given, else (AWS) the deployed parameter.
async fn load_config(
    args: &DoctorArgs,
    sdk: Option<&aws_config::SdkConfig>,
    report: &mut Report,
) -> Option<Config> {
    if let Some(path) = &args.config {
        return match Config::from_path(path) {
            Ok(c) => {
                let c = if args.backend == Backend::Aws {
                    match c.validate_for_aws() {
                        Ok(()) => c,
                        Err(e) => {
                            report.push(Check::fail(
                                "config",
                                format!("{}: {e}", path.display()),
                                "correct the field named above",
                            ));
                            return None;
                        }
                    }
                } else {
                    c
                };
                report.push(Check::pass(
                    "config",
                    format!("{} parses: {} pool(s)", path.display(), c.pools.len()),
                ));
                Some(c)
            }
            Err(e) => {
                report.push(Check::fail(
                    "config",
                    format!("{}: {e}", path.display()),
                    "correct the field named above (`spotrunner config check FILE`)",
                ));
                None
            }
        };
    }
    match (sdk, &args.config_parameter) {
        (Some(sdk), Some(name)) => {
            let (check, config) = aws::load_config(sdk, name).await;
            report.push(check);
            config
        }
        _ => {
            report.push(Check::fail(
                "config",
                "no configuration given",
                "pass --config FILE, or on AWS --config-parameter NAME (Terraform output config_parameter)",
            ));
            None
        }
    }
}
