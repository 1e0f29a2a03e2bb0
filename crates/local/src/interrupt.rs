//! Spot interruptions you can cause, locally: `spotrunner interrupt` on the
//! local backend. The runner "gets the warning" the way an EC2 instance does
//! from IMDS (`spot/instance-action`): a file `spot-instance-action` in the
//! instance's directory (`$SPOTRUNNER_HOME`) says `terminate` and when; the
//! warning event goes to the `events` queue for stop-runner (the local
//! EventBridge); once the grace has passed, the reaper kills the runner's
//! process group, as EC2 reclaims the instance, and its exit is reaped as
//! any runner's end.

use crate::db::err;
use crate::process::{LocalBackend, io};
use crate::queue::{names, now_ms};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::params;
use spotrunner_core::ports::PortError;
use spotrunner_core::stop_runner::StopEvent;
use std::path::Path;
use std::time::Duration;

/// The file in an instance's directory that announces its interruption.
pub const INSTANCE_ACTION: &str = "spot-instance-action";

/// When an instance announced for interruption is reclaimed, if it is.
pub fn reclaim_at(dir: &Path) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(dir.join(INSTANCE_ACTION)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("time")?.as_str()?.parse().ok()
}

impl LocalBackend {
    /// Announce the interruption of `instance_id` (a running runner) in
    /// `grace`: the instance-action file and the warning event, the event in
    /// one transaction with a check that the instance still runs. Returns
    /// when it is reclaimed. Announcing twice keeps the first deadline.
    pub fn interrupt(
        &self,
        instance_id: &str,
        grace: Duration,
    ) -> Result<DateTime<Utc>, PortError> {
        let Some(inst) = self
            .instances()?
            .into_iter()
            .find(|i| i.instance_id == instance_id)
        else {
            return Err(PortError::rejected(
                "local-compute",
                format!("no instance {instance_id} in this state directory"),
            ));
        };
        if !matches!(inst.state.as_str(), "running" | "pending") {
            return Err(PortError::rejected(
                "local-compute",
                format!(
                    "instance {instance_id} is {}, not running: nothing to interrupt",
                    inst.state
                ),
            ));
        }
        if let Some(at) = reclaim_at(&inst.dir) {
            return Ok(at);
        }
        let at = Utc::now()
            + chrono::Duration::from_std(grace).unwrap_or_else(|_| chrono::Duration::seconds(120));
        let action = serde_json::json!({
            "action": "terminate",
            "time": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        let tmp = inst.dir.join(format!("{INSTANCE_ACTION}.tmp"));
        // The directory is the runner's: never write through a link it planted.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(action.to_string().as_bytes()).map_err(io)?;
        }
        std::fs::rename(&tmp, inst.dir.join(INSTANCE_ACTION)).map_err(io)?;
        let mut event = StopEvent::SpotInterruption {
            instance_id: instance_id.to_string(),
        }
        .to_eventbridge();
        event["time"] = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true).into();
        let body = event.to_string();
        self.db().tx(|tx| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO messages (queue, body, sent_at, visible_at) VALUES (?1, ?2, ?3, ?3)",
                params![names::EVENTS, body, now],
            )
            .map_err(err)?;
            Ok(())
        })?;
        tracing::warn!(
            job_id = inst.job_id(),
            instance_id,
            runner_name = inst.runner_name,
            reclaim_at = %at,
            "spot interruption announced (local)"
        );
        Ok(at)
    }
}
