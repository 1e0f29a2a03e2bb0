//! The local backend's side of the doctor: the runner command and the state directory.

use super::report::Check;
use spotrunner_core::Config;
use std::path::Path;

pub fn checks(config: &Config, state_dir: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    match spotrunner_local::runner_problem(&crate::adapters::runner_settings(config)) {
        None => out.push(Check::pass("local.runner", "the runner command is usable")),
        Some(problem) => out.push(Check::fail(
            "local.runner",
            problem.to_string(),
            "set local.runner_command (or local.runner_dir) in the configuration",
        )),
    }
    match std::fs::create_dir_all(state_dir).and_then(|()| {
        let probe = state_dir.join(".doctor-probe");
        std::fs::write(&probe, b"")?;
        std::fs::remove_file(probe)
    }) {
        Ok(()) => out.push(Check::pass(
            "local.state_dir",
            format!("{} is writable", state_dir.display()),
        )),
        Err(e) => out.push(Check::fail(
            "local.state_dir",
            format!("{}: {e}", state_dir.display()),
            "pass --state-dir DIR (or SPOTRUNNER_STATE_DIR) naming a writable directory",
        )),
    }
    out
}
