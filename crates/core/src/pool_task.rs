//! Messages on the jobs queue that are not jobs: work create-runner does for a
//! pool (`crate::hot`). A body is a task when it has a `pool_task` field;
//! anything else is read as a [`crate::job::JobMessage`].

use serde::{Deserialize, Serialize};

/// Version of [`TaskMessage`] this build writes and reads.
pub const TASK_MESSAGE_VERSION: u32 = 1;

/// One pool task on the jobs queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMessage {
    pub version: u32,
    pub pool_task: PoolTask,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case", deny_unknown_fields)]
pub enum PoolTask {
    /// Launch one hot runner of `pool` under this name (the name makes a
    /// repeated delivery resume the same launch).
    HotRefill { pool: String, runner_name: String },
    /// GitHub gave `job_id` to `runner_name`, a runner of ours launched for
    /// another job (or a hot one): bind them, and find the job that runner was
    /// launched for another runner (`crate::hot::steal`).
    Started {
        job_id: u64,
        runner_name: String,
        /// How many times this task was put back because the job was not in
        /// the ledger yet.
        #[serde(default)]
        tries: u32,
    },
}

impl TaskMessage {
    pub fn new(task: PoolTask) -> Self {
        Self {
            version: TASK_MESSAGE_VERSION,
            pool_task: task,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("task message serializes")
    }

    /// `None` when the body is not a task (a job message, or garbage for the
    /// job parser to name); `Some(Err)` when it is a task this build cannot read.
    pub fn parse(body: &str) -> Option<Result<Self, String>> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        v.get("pool_task")?;
        let version = v.get("version").and_then(|x| x.as_u64());
        if version != Some(u64::from(TASK_MESSAGE_VERSION)) {
            return Some(Err(format!(
                "task message version {version:?} is not supported (this build reads {TASK_MESSAGE_VERSION})"
            )));
        }
        Some(serde_json::from_value(v).map_err(|e| format!("task message is not valid: {e}")))
    }

    /// The job this task is about, for log lines.
    pub fn job_id(&self) -> Option<u64> {
        match &self.pool_task {
            PoolTask::Started { job_id, .. } => Some(*job_id),
            PoolTask::HotRefill { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_round_trip_and_jobs_are_not_tasks() {
        let t = TaskMessage::new(PoolTask::Started {
            job_id: 7,
            runner_name: "sr_cpu-0-1".into(),
            tries: 0,
        });
        let body = t.to_json();
        assert!(body.contains("\"task\":\"started\""), "{body}");
        assert_eq!(TaskMessage::parse(&body).unwrap().unwrap(), t);
        assert!(TaskMessage::parse(r#"{"version":1,"job_id":3}"#).is_none());
        assert!(TaskMessage::parse("not json").is_none());
        let bad = TaskMessage::parse(r#"{"version":1,"pool_task":{"task":"nope"}}"#).unwrap();
        assert!(bad.unwrap_err().contains("not valid"));
        let v2 = TaskMessage::parse(r#"{"version":2,"pool_task":{}}"#).unwrap();
        assert!(v2.unwrap_err().contains("version"));
    }
}
