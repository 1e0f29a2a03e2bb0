//! `spotrunner serve` refuses to start with a runner that cannot start: a
//! missing runner command would fail every launch before its job starts (the
//! runaway the relaunch limit and the circuit breaker only bound).

use crate::RunnerSettings;
use std::path::Path;

/// What is wrong with the configured runner, naming the field, if anything.
pub fn runner_problem(settings: &RunnerSettings) -> Option<String> {
    match (&settings.runner_command, &settings.runner_dir) {
        (Some(command), _) => {
            let program = command.split_whitespace().next().unwrap_or_default();
            if program.is_empty() {
                return Some("local.runner_command: must not be empty".into());
            }
            if program.contains('/') {
                return match executable(Path::new(program)) {
                    true => None,
                    false => Some(format!(
                        "local.runner_command: {program:?} is not an executable file"
                    )),
                };
            }
            let on_path = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| executable(&d.join(program))))
                .unwrap_or(false);
            (!on_path).then(|| {
                format!("local.runner_command: {program:?} is not on PATH (give a path to it)")
            })
        }
        (None, Some(dir)) => {
            let run = Path::new(dir).join("run.sh");
            (!executable(&run)).then(|| {
                format!(
                    "local.runner_dir: {} has no executable run.sh (an installed actions runner)",
                    Path::new(dir).display()
                )
            })
        }
        (None, None) => None,
    }
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(c: &str) -> RunnerSettings {
        RunnerSettings {
            runner_command: Some(c.into()),
            ..RunnerSettings::default()
        }
    }

    #[test]
    fn a_runner_that_cannot_start_is_named() {
        assert_eq!(runner_problem(&cmd("sh -c 'exit 0'")), None);
        assert_eq!(runner_problem(&cmd("/bin/sh -c true")), None);
        assert_eq!(runner_problem(&RunnerSettings::default()), None);
        let missing = runner_problem(&cmd("no-such-runner-xyz --once")).unwrap();
        assert!(missing.contains("local.runner_command") && missing.contains("no-such-runner-xyz"));
        let plain = std::env::temp_dir().join(format!("sr-not-exec-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        let not_exec = runner_problem(&cmd(&plain.display().to_string())).unwrap();
        std::fs::remove_file(&plain).unwrap();
        assert!(not_exec.contains("not an executable file"), "{not_exec}");
        let dir = RunnerSettings {
            runner_dir: Some("/nonexistent/runner".into()),
            ..RunnerSettings::default()
        };
        assert!(runner_problem(&dir).unwrap().contains("local.runner_dir"));
    }
}
