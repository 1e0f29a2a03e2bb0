//! A job's stage timestamps, kept on its ledger record: where its queue time
//! went (`spotrunner job ID`, the queue-time percentiles of `status`, the
//! `stage_ms` metrics).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One stage of a job's way from GitHub's queue to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// GitHub queued it (`workflow_job.created_at`).
    Created,
    /// Its webhook (or the sweep) reached us.
    Received,
    /// create-runner first claimed it.
    Claimed,
    /// It found its pool (or the global quota) full and entered the waiting line.
    WaitingSince,
    /// It left the waiting line with a slot.
    WaitingUntil,
    /// GitHub gave out its JIT runner configuration.
    JitRegistered,
    /// The VM (or local process) was asked for.
    LaunchRequested,
    /// The instance answered: its agent is online.
    InstanceRunning,
    /// The runner command was sent.
    BootstrapSent,
    /// GitHub says `in_progress`: a runner took it.
    InProgress,
    /// GitHub says `completed`.
    Completed,
    /// Its runner's capacity was given back.
    Released,
    /// Its runner got a spot interruption warning while it had the job.
    Interrupted,
    /// We asked GitHub to re-run it (it was killed by a spot interruption).
    RerunRequested,
}

impl Stage {
    pub const ALL: [Stage; 14] = [
        Self::Created,
        Self::Received,
        Self::Claimed,
        Self::WaitingSince,
        Self::WaitingUntil,
        Self::JitRegistered,
        Self::LaunchRequested,
        Self::InstanceRunning,
        Self::BootstrapSent,
        Self::InProgress,
        Self::Completed,
        Self::Released,
        Self::Interrupted,
        Self::RerunRequested,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Received => "received",
            Self::Claimed => "claimed",
            Self::WaitingSince => "waiting_since",
            Self::WaitingUntil => "waiting_until",
            Self::JitRegistered => "jit_registered",
            Self::LaunchRequested => "launch_requested",
            Self::InstanceRunning => "instance_running",
            Self::BootstrapSent => "bootstrap_sent",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Released => "released",
            Self::Interrupted => "interrupted",
            Self::RerunRequested => "rerun_requested",
        }
    }
}

/// When each stage was reached (absent: not reached, or not known). Stored as
/// a JSON object by stage name; a name this build does not know (a newer
/// build's stage) is skipped on reading, never an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    from = "BTreeMap<String, DateTime<Utc>>",
    into = "BTreeMap<String, DateTime<Utc>>"
)]
pub struct Timeline {
    stamps: BTreeMap<Stage, DateTime<Utc>>,
}

impl From<BTreeMap<String, DateTime<Utc>>> for Timeline {
    fn from(named: BTreeMap<String, DateTime<Utc>>) -> Self {
        let stamps = Stage::ALL
            .iter()
            .filter_map(|s| named.get(s.as_str()).map(|t| (*s, *t)))
            .collect();
        Self { stamps }
    }
}

impl From<Timeline> for BTreeMap<String, DateTime<Utc>> {
    fn from(t: Timeline) -> Self {
        t.stamps
            .into_iter()
            .map(|(s, at)| (s.as_str().to_string(), at))
            .collect()
    }
}

impl Timeline {
    pub fn get(&self, stage: Stage) -> Option<DateTime<Utc>> {
        self.stamps.get(&stage).copied()
    }

    /// Record `stage` at `at` (a later launch attempt overwrites the earlier one's).
    pub fn set(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.stamps.insert(stage, at);
    }

    /// Record `stage` unless it was recorded already (the first claim, the
    /// first time the job waited).
    pub fn set_once(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.stamps.entry(stage).or_insert(at);
    }

    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }

    /// The stages reached, in the order of the job's way.
    pub fn stages(&self) -> impl Iterator<Item = (Stage, DateTime<Utc>)> + '_ {
        Stage::ALL
            .iter()
            .filter_map(|s| self.get(*s).map(|t| (*s, t)))
    }

    /// Milliseconds from `from` to `to`, when both were reached in that order.
    pub fn millis(&self, from: Stage, to: Stage) -> Option<i64> {
        let d = (self.get(to)? - self.get(from)?).num_milliseconds();
        (d >= 0).then_some(d)
    }

    /// GitHub's queue time as the user feels it: created → `in_progress`.
    pub fn queue_millis(&self) -> Option<i64> {
        self.millis(Stage::Created, Stage::InProgress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_by_stage_name_and_keep_their_order() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut t = Timeline::default();
        t.set(Stage::LaunchRequested, t0 + chrono::Duration::seconds(3));
        t.set(Stage::Created, t0);
        t.set_once(Stage::Created, t0 + chrono::Duration::seconds(9));
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["created"], "2026-01-01T00:00:00Z");
        assert_eq!(json["launch_requested"], "2026-01-01T00:00:03Z");
        let back: Timeline = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, t);
        // A stage a newer build added is skipped, not an error.
        let mut newer = json;
        newer["teleported"] = "2026-01-01T00:00:05Z".into();
        assert_eq!(serde_json::from_value::<Timeline>(newer).unwrap(), t);
        let order: Vec<Stage> = back.stages().map(|(s, _)| s).collect();
        assert_eq!(order, vec![Stage::Created, Stage::LaunchRequested]);
        assert_eq!(
            back.millis(Stage::Created, Stage::LaunchRequested),
            Some(3000)
        );
        assert_eq!(back.millis(Stage::LaunchRequested, Stage::Created), None);
        assert_eq!(back.queue_millis(), None);
    }
}
