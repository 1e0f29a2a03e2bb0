//! `spotrunner demo`: placeholder replaced below.
use std::path::PathBuf;
use std::process::ExitCode;
pub async fn run(_jobs: u32, _state_dir: Option<PathBuf>) -> Result<ExitCode, String> {
    Err("demo: not written yet".into())
}
