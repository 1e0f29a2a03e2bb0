//! The job message on the jobs queue (versioned JSON; the job id is the idempotency
//! key downstream) and the parts of GitHub's `workflow_job` event we read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of [`JobMessage`] this build writes and reads.
pub const JOB_MESSAGE_VERSION: u32 = 1;

/// One queued job for one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobMessage {
    pub version: u32,
    pub job_id: u64,
    pub run_id: u64,
    pub run_attempt: u32,
    /// `owner/name`.
    pub repository: String,
    pub owner: String,
    /// `Organization` or `User`.
    pub owner_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    pub labels: Vec<String>,
    pub pool: String,
    /// `X-GitHub-Delivery` of the webhook that brought the job (absent when the
    /// janitor re-enqueues it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// When GitHub queued the job (`workflow_job.created_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// How many times a runner was launched for this job before (0 at first).
    #[serde(default)]
    pub launch_attempt: u32,
    /// How many times the job was put back for want of capacity (drives the backoff).
    #[serde(default)]
    pub deferrals: u32,
    /// The job's name in its workflow (`workflow_job.name`): with the run id and
    /// the run attempt it recognises the re-run of an interrupted job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
}

/// A message body that is not a job message this build understands.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("job message is not valid: {0}")]
    Invalid(String),
    #[error("job message version {0} is not supported (this build reads {JOB_MESSAGE_VERSION})")]
    Version(u32),
}

impl JobMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("job message serializes")
    }

    pub fn parse(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let v: Versioned =
            serde_json::from_str(body).map_err(|e| MessageError::Invalid(e.to_string()))?;
        if v.version != JOB_MESSAGE_VERSION {
            return Err(MessageError::Version(v.version));
        }
        let de = &mut serde_json::Deserializer::from_str(body);
        let msg: Self = serde_path_to_error::deserialize(de)
            .map_err(|e| MessageError::Invalid(format!("{}: {}", e.path(), e.inner())))?;
        if let Some(problem) = crate::names::repository_problem(&msg.repository, &msg.owner) {
            return Err(MessageError::Invalid(format!("repository: {problem}")));
        }
        Ok(msg)
    }

    /// When the job was queued on GitHub, else when we first heard of it.
    pub fn queued_since(&self) -> DateTime<Utc> {
        self.queued_at.unwrap_or(self.received_at)
    }
}

/// The `workflow_job` webhook payload, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowJobEvent {
    pub action: String,
    pub workflow_job: WorkflowJob,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowJob {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    pub run_id: u64,
    #[serde(default = "one")]
    pub run_attempt: u32,
    pub labels: Vec<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub runner_id: Option<u64>,
    #[serde(default)]
    pub runner_name: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
    pub owner: Owner,
    /// GitHub always sends it; a payload without it (nor `visibility`)
    /// counts as public (fail closed).
    #[serde(default)]
    pub private: Option<bool>,
    /// `public`, `private` or `internal` (newer payloads).
    #[serde(default)]
    pub visibility: Option<String>,
}

impl Repository {
    /// Anyone can read it, and so anyone can open a pull request whose
    /// workflow runs on a runner that serves it.
    pub fn is_public(&self) -> bool {
        match self.private {
            Some(private) => !private,
            None => !matches!(self.visibility.as_deref(), Some("private" | "internal")),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Owner {
    pub login: String,
    #[serde(rename = "type", default = "organization")]
    pub kind: String,
}

fn organization() -> String {
    "Organization".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

/// What `in_progress` / `completed` tell us about a job: recorded in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStateUpdate {
    pub job_id: u64,
    pub repository: String,
    pub status: ObservedJobStatus,
    /// The runner GitHub gave the job to; with JIT runners it may be one launched
    /// for another job.
    pub runner_name: Option<String>,
    pub runner_id: Option<u64>,
    pub conclusion: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedJobStatus {
    InProgress,
    Completed,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobMessage {
        JobMessage {
            version: JOB_MESSAGE_VERSION,
            job_id: 1,
            run_id: 2,
            run_attempt: 1,
            repository: "o/r".into(),
            owner: "o".into(),
            owner_type: "User".into(),
            installation_id: Some(3),
            labels: vec!["linux".into()],
            pool: "cpu".into(),
            delivery_id: Some("d".into()),
            received_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            queued_at: None,
            launch_attempt: 0,
            deferrals: 0,
            job_name: None,
        }
    }

    #[test]
    fn round_trip_and_version_check() {
        let m = sample();
        assert_eq!(JobMessage::parse(&m.to_json()).unwrap(), m);
        let v2 = m.to_json().replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            JobMessage::parse(&v2),
            Err(MessageError::Version(2))
        ));
        let err = JobMessage::parse(&m.to_json().replace("\"job_id\":1", "\"job_id\":\"x\""))
            .unwrap_err();
        assert!(err.to_string().contains("job_id"), "{err}");
        assert!(JobMessage::parse("not json").is_err());
        assert_eq!(m.queued_since(), m.received_at);
    }
}
