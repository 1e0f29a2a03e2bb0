//! Loading the configuration document for the CLI, and `spotrunner config check`.

use spotrunner_core::Config;
use spotrunner_core::config::LocalConfig;
use std::path::Path;
use std::process::ExitCode;

/// Load and validate; the error lists every problem with its field.
pub fn load(path: &Path) -> Result<Config, String> {
    Config::from_path(path).map_err(|e| {
        let mut out = format!("{} is not a valid configuration:", path.display());
        for fe in &e.errors {
            out.push_str(&format!("\n  - {fe}"));
        }
        out
    })
}

/// The `local` section, defaults filled in.
pub fn local(config: &Config) -> LocalConfig {
    config.local.clone().unwrap_or_default()
}

/// `spotrunner config check FILE`: the resolved document on stdout, or the
/// field-named errors on stderr and exit code 2.
pub fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(mut config) => {
            if config.local.is_none() {
                config.local = Some(LocalConfig::default());
            }
            println!("{}", config.to_json());
            eprintln!("{}: valid ({} pool(s))", path.display(), config.pools.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
