//! The `runner:` line of `spotrunner status`: the runner version in use,
//! which architectures the runner cache holds verified, GitHub's newest
//! release and how far behind (from the `runner-release` state document the
//! runner-cache task writes).

use chrono::{DateTime, Utc};
use serde::Serialize;
use spotrunner_core::runner_cache::{
    DEFAULT_RUNNER_VERSION, LATEST, LedgerRunnerPin, RunnerReleaseState,
};

/// What `status` knows about the runner version.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunnerVersionStatus {
    /// `runner_version` as configured (`2.329.0` or `latest`).
    pub configured: String,
    /// The version VMs get now.
    pub in_use: String,
    /// Architectures whose tarball of `in_use` is verified in the cache.
    pub cached: Vec<String>,
    pub latest: Option<String>,
    pub latest_published_at: Option<DateTime<Utc>>,
    /// See `runner_cache::behind_days`.
    pub behind_days: u32,
    pub max_age_days: u32,
    pub checked_at: Option<DateTime<Utc>>,
    pub refused: Vec<String>,
}

impl RunnerVersionStatus {
    pub fn of(
        configured: &str,
        max_age_days: u32,
        state: &RunnerReleaseState,
        now: DateTime<Utc>,
    ) -> Self {
        let in_use = LedgerRunnerPin::resolve(configured, DEFAULT_RUNNER_VERSION, state).version;
        let cached = if state.version == in_use {
            state.sha256.keys().cloned().collect()
        } else {
            Vec::new()
        };
        let known = !state.latest_version.is_empty();
        Self {
            configured: configured.to_string(),
            behind_days: spotrunner_core::runner_cache::behind_days(
                &in_use,
                &state.latest_version,
                state.latest_published_at,
                now,
            ),
            in_use,
            cached,
            latest: known.then(|| state.latest_version.clone()),
            latest_published_at: state.latest_published_at,
            max_age_days,
            checked_at: state.checked_at,
            refused: state.refused.clone(),
        }
    }

    /// `runner: 2.329.0 (x64, arm64 cached), latest 2.330.0 published
    /// 2026-10-01 — 56 days behind` plus a line per refusal.
    pub fn render(&self) -> String {
        let mut out = format!("runner: {}", self.in_use);
        if self.configured == LATEST {
            out.push_str(" (latest)");
        }
        if self.cached.is_empty() {
            out.push_str(" (not in the runner cache)");
        } else {
            out.push_str(&format!(" ({} cached)", self.cached.join(", ")));
        }
        match (&self.latest, self.latest_published_at) {
            (Some(latest), Some(at)) => {
                out.push_str(&format!(
                    ", latest {latest} published {}",
                    at.format("%Y-%m-%d")
                ));
                if self.behind_days > 0 {
                    out.push_str(&format!(" — {} days behind", self.behind_days));
                    if self.behind_days > self.max_age_days {
                        out.push_str(&format!(
                            " (more than {}: update runner_version)",
                            self.max_age_days
                        ));
                    }
                } else {
                    out.push_str(" — current");
                }
            }
            _ => out.push_str(", latest unknown (the runner-cache task has not run)"),
        }
        out.push('\n');
        for r in &self.refused {
            out.push_str(&format!("  refused {r}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn state() -> RunnerReleaseState {
        RunnerReleaseState {
            version: "2.329.0".into(),
            sha256: [
                ("arm64".into(), "b".repeat(64)),
                ("x64".into(), "a".repeat(64)),
            ]
            .into(),
            latest_version: "2.330.0".into(),
            latest_published_at: Some(t("2026-10-01T08:00:00Z")),
            ..Default::default()
        }
    }

    #[test]
    fn a_pinned_version_behind_a_release_says_how_far() {
        let s = RunnerVersionStatus::of("2.329.0", 30, &state(), t("2026-11-26T20:30:00Z"));
        assert_eq!(
            s.render(),
            "runner: 2.329.0 (arm64, x64 cached), latest 2.330.0 published 2026-10-01 — 56 days behind (more than 30: update runner_version)\n"
        );
        let s = RunnerVersionStatus::of("2.329.0", 60, &state(), t("2026-11-26T20:30:00Z"));
        assert!(s.render().ends_with("— 56 days behind\n"), "{}", s.render());
    }

    #[test]
    fn latest_follows_the_synced_version_and_says_when_nothing_ran() {
        let mut st = state();
        st.version = "2.330.0".into();
        st.refused = vec!["arm64: bad checksum".into()];
        let s = RunnerVersionStatus::of(LATEST, 30, &st, t("2026-11-26T20:30:00Z"));
        assert_eq!(
            s.render(),
            "runner: 2.330.0 (latest) (arm64, x64 cached), latest 2.330.0 published 2026-10-01 — current\n  refused arm64: bad checksum\n"
        );
        let s = RunnerVersionStatus::of(
            LATEST,
            30,
            &RunnerReleaseState::default(),
            t("2026-11-26T20:30:00Z"),
        );
        assert_eq!(
            s.render(),
            format!(
                "runner: {DEFAULT_RUNNER_VERSION} (latest) (not in the runner cache), latest unknown (the runner-cache task has not run)\n"
            )
        );
    }
}
