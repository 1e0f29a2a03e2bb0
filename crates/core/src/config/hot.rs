//! A pool's hot pool: runners booted, bootstrapped and registered before any
//! job, waiting idle so that a queued job starts at once (`crate::hot`).

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// `hot` on a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotPool {
    /// Idle runners to keep (they count against `max_runners` and the quota).
    pub count: u32,
    /// Where the hot runners register: an organisation (`scope = "org"`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// …or a repository `owner/name` (`scope = "repo"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The GitHub App installation of `owner` (found by the client when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    /// An idle hot runner older than this is replaced by a fresh one.
    #[serde(default = "default_max_idle")]
    pub max_idle_secs: u64,
    /// When the hot pool applies (UTC); empty: always. Outside every window
    /// the pool keeps no idle runner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<HotWindow>,
}

/// Days and hours (UTC) when a hot pool applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HotWindow {
    /// `mon`…`sun`; empty: every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// First hour (0–23) of the window.
    #[serde(default)]
    pub from_hour: u32,
    /// Hour (1–24) the window ends, exclusive.
    #[serde(default = "end_of_day")]
    pub to_hour: u32,
}

fn default_max_idle() -> u64 {
    3600
}

fn end_of_day() -> u32 {
    24
}

pub(crate) const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl HotWindow {
    fn contains(&self, now: DateTime<Utc>) -> bool {
        let day = DAYS[now.weekday().num_days_from_monday() as usize];
        let day_ok = self.days.is_empty() || self.days.iter().any(|d| d.eq_ignore_ascii_case(day));
        day_ok && (self.from_hour..self.to_hour).contains(&now.hour())
    }
}

impl HotPool {
    /// How many idle runners the pool should keep at `now`.
    pub fn target(&self, now: DateTime<Utc>) -> u32 {
        if self.schedule.is_empty() || self.schedule.iter().any(|w| w.contains(now)) {
            self.count
        } else {
            0
        }
    }

    /// Why this hot pool is not valid, per field (relative to `hot.`).
    pub(crate) fn problems(&self, max_runners: u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.count > max_runners {
            out.push((
                "count".into(),
                format!(
                    "{} is more than the pool's max_runners ({max_runners})",
                    self.count
                ),
            ));
        }
        match (&self.owner, &self.repository) {
            (None, None) if self.count > 0 => out.push((
                "owner".into(),
                "a hot pool needs owner (an organisation) or repository (owner/name) to register its runners with".into(),
            )),
            (Some(_), Some(_)) => out.push((
                "repository".into(),
                "set owner or repository, not both".into(),
            )),
            (_, Some(r)) => {
                let owner = r.split_once('/').map_or("", |(o, _)| o);
                if let Some(problem) = crate::names::repository_problem(r, owner) {
                    out.push(("repository".into(), problem));
                }
            }
            _ => {}
        }
        if self.max_idle_secs < 60 {
            out.push(("max_idle_secs".into(), "must be at least 60".into()));
        }
        for (i, w) in self.schedule.iter().enumerate() {
            for (j, d) in w.days.iter().enumerate() {
                if !DAYS.iter().any(|x| x.eq_ignore_ascii_case(d)) {
                    out.push((
                        format!("schedule[{i}].days[{j}]"),
                        format!("{d:?} is not one of {}", DAYS.join(", ")),
                    ));
                }
            }
            if w.from_hour >= w.to_hour || w.to_hour > 24 {
                out.push((
                    format!("schedule[{i}]"),
                    format!(
                        "from_hour {} .. to_hour {} is not a window within 0..24",
                        w.from_hour, w.to_hour
                    ),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_schedule_switches_the_target() {
        let hot = HotPool {
            count: 3,
            owner: Some("o".into()),
            repository: None,
            installation_id: None,
            max_idle_secs: 3600,
            schedule: vec![HotWindow {
                days: vec!["mon".into(), "Fri".into()],
                from_hour: 8,
                to_hour: 18,
            }],
        };
        // 2026-11-27 is a Friday.
        assert_eq!(hot.target(at("2026-11-27T08:00:00Z")), 3);
        assert_eq!(hot.target(at("2026-11-27T17:59:59Z")), 3);
        assert_eq!(hot.target(at("2026-11-27T18:00:00Z")), 0);
        assert_eq!(hot.target(at("2026-11-27T07:59:00Z")), 0);
        assert_eq!(hot.target(at("2026-11-28T10:00:00Z")), 0, "saturday");
        let always = HotPool {
            schedule: vec![],
            ..hot
        };
        assert_eq!(always.target(at("2026-11-28T03:00:00Z")), 3);
    }

    #[test]
    fn problems_name_the_field() {
        let hot = HotPool {
            count: 5,
            owner: None,
            repository: None,
            installation_id: None,
            max_idle_secs: 10,
            schedule: vec![HotWindow {
                days: vec!["someday".into()],
                from_hour: 9,
                to_hour: 9,
            }],
        };
        let fields: Vec<String> = hot.problems(4).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "count",
                "owner",
                "max_idle_secs",
                "schedule[0].days[0]",
                "schedule[0]"
            ]
        );
    }
}
