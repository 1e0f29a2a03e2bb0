//! `spotrunner`: the whole control plane in one process (`serve`), and the
//! operator commands that look at and steer a deployment, local or on AWS.

mod adapters;
mod config_file;
mod demo;
mod doctor;
mod explain;
mod github_app;
mod handlers;
mod inbox;
mod interrupt;
mod job_view;
mod logging;
mod ops;
mod pacer;
mod serve;
mod status;
mod status_runner;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "spotrunner",
    version,
    about = "Just-in-time ephemeral GitHub Actions runners"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the ledger, queues and runners are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite in the state directory, runners as local processes.
    Local,
    /// DynamoDB, SQS, SSM and EC2 from the standard AWS environment.
    Aws,
}

#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// The configuration document (JSON or TOML).
    #[arg(long, short, env = "SPOTRUNNER_CONFIG")]
    pub config: PathBuf,
    /// State directory of the local backend.
    #[arg(long, env = "SPOTRUNNER_STATE_DIR", default_value = "spotrunner-state")]
    pub state_dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    pub backend: Backend,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: webhook, create-runner, stop-runner, janitor, dlq-mover.
    Serve {
        #[command(flatten)]
        target: Target,
        /// HTTP listen address (default: the config's local.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Jobs, runners, capacity, waiting lines, queue times and queues.
    Status {
        #[command(flatten)]
        target: Target,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Queue-time percentiles over the jobs that started in the last SECS.
        #[arg(long, value_name = "SECS", default_value_t = status::DEFAULT_WINDOW_SECS)]
        window: i64,
    },
    /// One job's timeline: each stage from GitHub's queue to its end.
    Job {
        #[command(flatten)]
        target: Target,
        /// GitHub's job id (`workflow_job.id`).
        job_id: u64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration document.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Which pool a job with these labels gets, and why the others do not.
    Match {
        #[arg(long, short, env = "SPOTRUNNER_CONFIG")]
        config: PathBuf,
        /// The job is of a public repository (served only by pools that
        /// allow public repositories).
        #[arg(long)]
        public: bool,
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Move jobs from the dead-letter queue back to the jobs queue (dlq-mover).
    Redrive {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        dry_run: bool,
    },
    /// Reconcile instances, ledger and GitHub runners now (janitor).
    Janitor {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop launching runners for a pool; its jobs stay queued.
    Drain {
        #[command(flatten)]
        target: Target,
        pool: String,
    },
    /// Launch runners for a drained pool again.
    Undrain {
        #[command(flatten)]
        target: Target,
        pool: String,
    },
    /// Deliver a spot interruption to a runner (by instance id or job id).
    /// Locally the runner gets the warning and is killed after the grace; on
    /// AWS only the warning event reaches stop-runner (use AWS FIS for a real one).
    Interrupt {
        #[command(flatten)]
        target: Target,
        /// An instance id (`i-…`) or a job id.
        subject: String,
        /// Seconds between the warning and the end (local backend; EC2 gives 120).
        #[arg(long, default_value_t = 120)]
        grace: u64,
    },
    /// Create spotrunner's GitHub App from a manifest, or point its webhook.
    #[command(subcommand, name = "github-app")]
    GitHubApp(github_app::GitHubAppCommand),
    /// Check that GitHub, the App, its webhook and the backend fit together;
    /// each failure with its fix. Exit status 1 when a check failed.
    Doctor(doctor::DoctorArgs),
    /// A first look, no account needed: a local serve, a fake GitHub, sample jobs.
    Demo {
        /// Sample jobs to send.
        #[arg(long, default_value_t = 3)]
        jobs: u32,
        /// Keep the demo's state directory (default: a temporary one, removed).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the resolved configuration, or the errors naming fields.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Serve { target, listen } => {
            logging::init_json();
            serve::run(target, listen).await
        }
        Command::Status {
            target,
            json,
            window,
        } => {
            logging::init_quiet();
            status::run(&target, json, window).await
        }
        Command::Job {
            target,
            job_id,
            json,
        } => {
            logging::init_quiet();
            job_view::run(&target, job_id, json).await
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => Ok(config_file::check(&file)),
        Command::Match {
            config,
            public,
            labels,
        } => explain::run(&config, &labels, public),
        Command::Redrive { target, dry_run } => {
            logging::init_quiet();
            ops::redrive(&target, dry_run).await
        }
        Command::Janitor { target, dry_run } => {
            logging::init_quiet();
            ops::janitor(&target, dry_run).await
        }
        Command::Drain { target, pool } => {
            logging::init_quiet();
            ops::set_drained(&target, &pool, true).await
        }
        Command::Undrain { target, pool } => {
            logging::init_quiet();
            ops::set_drained(&target, &pool, false).await
        }
        Command::Interrupt {
            target,
            subject,
            grace,
        } => {
            logging::init_quiet();
            interrupt::run(&target, &subject, std::time::Duration::from_secs(grace)).await
        }
        Command::GitHubApp(command) => {
            logging::init_quiet();
            github_app::run(command).await
        }
        Command::Doctor(args) => {
            logging::init_quiet();
            doctor::run(args).await
        }
        Command::Demo { jobs, state_dir } => demo::run(jobs, state_dir).await,
    }
}
