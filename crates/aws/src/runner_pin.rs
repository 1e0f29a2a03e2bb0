//! The runner version and checksum the bootstrap command carries, when they
//! come from the runner cache (`runner_version = "latest"`, or a pinned
//! version the cache verified): [`SsmCommands::with_runner_pin`] resolves a
//! [`RunnerPinSource`] per command and [`apply_pin`] puts it into the
//! document's parameters (`runnerVersion`, `runnerSha256`).
//!
//! [`SsmCommands::with_runner_pin`]: crate::ssm_runner::SsmCommands::with_runner_pin

use spotrunner_core::runner_cache::{RunnerPin, RunnerPinSource};
use std::fmt;
use std::sync::Arc;

/// A [`RunnerPinSource`] held by `SsmCommands` (which is `Debug`).
#[derive(Clone)]
pub struct PinSource(pub Arc<dyn RunnerPinSource>);

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PinSource")
    }
}

/// Set `runnerVersion` to the pin's version and add `runnerSha256`: the
/// checksum of the architecture the command names (`runnerArch`, the
/// document's default `x64` when absent) per [`RunnerPin::sha256_for`] (the
/// verified one, else the default version's compiled-in one), empty when
/// neither is known.
pub fn apply_pin(params: &mut Vec<(&'static str, String)>, pin: &RunnerPin) {
    let arch = params
        .iter()
        .find(|(k, _)| *k == "runnerArch")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "x64".into());
    let sha = pin.sha256_for(&arch);
    for (k, v) in params.iter_mut() {
        if *k == "runnerVersion" {
            *v = pin.version.clone();
        }
    }
    params.retain(|(k, _)| *k != "runnerSha256");
    params.push(("runnerSha256", sha));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> RunnerPin {
        RunnerPin {
            version: "2.330.0".into(),
            sha256: [
                ("x64".into(), "a".repeat(64)),
                ("arm64".into(), "b".repeat(64)),
            ]
            .into(),
        }
    }

    fn get(p: &[(&'static str, String)], k: &str) -> String {
        p.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    #[test]
    fn the_version_and_the_checksum_of_the_commands_arch_are_sent() {
        let mut p = vec![
            ("runnerVersion", "2.329.0".to_string()),
            ("runnerName", "r".into()),
        ];
        apply_pin(&mut p, &pin());
        assert_eq!(get(&p, "runnerVersion"), "2.330.0");
        assert_eq!(get(&p, "runnerSha256"), "a".repeat(64), "x64 by default");
        let mut p = vec![
            ("runnerVersion", "2.329.0".to_string()),
            ("runnerArch", "arm64".to_string()),
        ];
        apply_pin(&mut p, &pin());
        assert_eq!(get(&p, "runnerSha256"), "b".repeat(64));
        assert_eq!(p.iter().filter(|(k, _)| *k == "runnerSha256").count(), 1);
    }

    #[test]
    fn no_checksum_known_sends_an_empty_one() {
        let mut p = vec![("runnerVersion", "2.329.0".to_string())];
        apply_pin(
            &mut p,
            &RunnerPin {
                version: "2.328.0".into(),
                sha256: Default::default(),
            },
        );
        assert_eq!(get(&p, "runnerVersion"), "2.328.0");
        assert_eq!(get(&p, "runnerSha256"), "");
    }

    #[test]
    fn the_default_version_unverified_sends_its_compiled_in_checksum() {
        use spotrunner_core::runner_cache::{DEFAULT_RUNNER_VERSION, default_runner_sha256};
        for arch in ["x64", "arm64"] {
            let mut p = vec![
                ("runnerVersion", "2.328.0".to_string()),
                ("runnerArch", arch.to_string()),
                ("runnerSha256", String::new()),
            ];
            apply_pin(
                &mut p,
                &RunnerPin {
                    version: DEFAULT_RUNNER_VERSION.into(),
                    sha256: Default::default(),
                },
            );
            let sha = get(&p, "runnerSha256");
            assert_eq!(
                Some(sha.as_str()),
                default_runner_sha256(DEFAULT_RUNNER_VERSION, arch)
            );
            assert_eq!(sha.len(), 64, "{arch}");
            assert_eq!(p.iter().filter(|(k, _)| *k == "runnerSha256").count(), 1);
        }
    }
}
