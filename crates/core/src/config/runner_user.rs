//! What a pool's VMs run the runner as, and with what runner tarball: the
//! pool's `runner_user` and `allow_unverified_runner`, sent with the
//! bootstrap command (`BootstrapCommand`, SSM parameters `runnerUser`,
//! `allowUnverifiedRunner`; `scripts/runner/bootstrap.sh`).
//!
//! - `runner_user` (default [`DEFAULT_RUNNER_USER`], `"runner"`): the Linux
//!   user the runner and every job step run as. bootstrap.sh creates it when
//!   missing and gives it passwordless sudo, as GitHub's hosted runners do, so
//!   a job that needs root says `sudo` and nothing runs as root by accident.
//!   [`ROOT_USER`] is the explicit choice of running jobs as root. A valid
//!   name is `[a-z_][a-z0-9_-]{0,31}` (what `useradd` accepts on every
//!   distribution, and what the SSM document's `allowedPattern` repeats).
//!   AWS only: the local backend runs runners as its own user.
//! - `allow_unverified_runner` (default false): bootstrap.sh installs a runner
//!   tarball only when it can check its SHA-256 (sent with the command, or the
//!   runner cache's sidecar), because with `runner_cache_upload` a job can
//!   plant a tarball for a version not cached yet. This opts a pool out, and
//!   only with a pinned `runner_version`: with `"latest"` the version is the
//!   one the runner cache verified, so an unverified one is never needed.

use super::Pool;
use crate::runner_cache::LATEST;

/// The runner user of a pool that names none.
pub const DEFAULT_RUNNER_USER: &str = "runner";

/// `runner_user = "root"`: jobs run as root, by choice.
pub const ROOT_USER: &str = "root";

/// The longest Linux user name `useradd` accepts.
const MAX_USER_NAME: usize = 32;

/// Why `name` is not a Linux user name bootstrap.sh accepts, if it is not.
pub fn runner_user_problem(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok && name.len() <= MAX_USER_NAME {
        return None;
    }
    Some(format!(
        "{name:?} is not a Linux user name: 1 to {MAX_USER_NAME} characters, \
         a-z or '_' first, then a-z, 0-9, '_' or '-' (\"root\" to run jobs as root)"
    ))
}

/// The pool's runner settings against the document's `runner_version`:
/// (field, problem) pairs.
pub(super) fn problems(pool: &Pool, runner_version: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(problem) = runner_user_problem(&pool.runner_user) {
        out.push(("runner_user", problem));
    }
    if pool.allow_unverified_runner && runner_version == LATEST {
        out.push((
            "allow_unverified_runner",
            "needs a pinned runner_version (e.g. \"2.329.0\"), not \"latest\": \
             the latest version always comes verified by the runner cache"
                .to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::sample_toml;

    /// The sample document with `fields` added to its first pool.
    fn first_pool_with(fields: &str) -> String {
        sample_toml().replace("max_runners = 5\n", &format!("max_runners = 5\n{fields}\n"))
    }

    fn errors(text: &str) -> Vec<String> {
        Config::from_toml(text)
            .expect_err("should be refused")
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn pools_run_jobs_as_runner_by_default_and_root_only_when_asked() {
        let c = Config::from_toml(sample_toml()).unwrap();
        assert!(c.pools.iter().all(|p| p.runner_user == "runner"));
        assert!(c.pools.iter().all(|p| !p.allow_unverified_runner));
        let root = Config::from_toml(&first_pool_with("runner_user = \"root\"")).unwrap();
        assert_eq!(root.pools[0].runner_user, ROOT_USER);
        assert_eq!(root.pools[1].runner_user, DEFAULT_RUNNER_USER);
        // JSON keeps the choice.
        assert_eq!(Config::from_json(&root.to_json()).unwrap(), root);
    }

    #[test]
    fn a_bad_runner_user_is_named_and_refused() {
        for bad in ["Runner", "run ner", "", "9lives"] {
            let text = first_pool_with(&format!("runner_user = {bad:?}"));
            let errs = errors(&text);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].starts_with(&format!(
                    "pools[0].runner_user: {bad:?} is not a Linux user name"
                )),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn allow_unverified_runner_needs_a_pinned_version() {
        let pinned = first_pool_with("allow_unverified_runner = true");
        let c = Config::from_toml(&pinned).unwrap();
        assert!(c.pools[0].allow_unverified_runner);
        assert!(!c.pools[1].allow_unverified_runner);
        let latest = format!("runner_version = \"latest\"\n{pinned}");
        let errs = errors(&latest);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with(
                "pools[0].allow_unverified_runner: needs a pinned runner_version (e.g. \"2.329.0\"), not \"latest\""
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn linux_user_names_are_accepted_and_others_named() {
        for ok in ["runner", "root", "_ci", "ci-user_2", &"a".repeat(32)] {
            assert_eq!(runner_user_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "Runner",
            "2runner",
            "-runner",
            "run ner",
            "run;ner",
            "run.ner",
            "runner$",
            &"a".repeat(33),
        ] {
            let problem = runner_user_problem(bad).expect(bad);
            assert!(problem.contains(&format!("{bad:?}")), "{problem}");
        }
    }
}
