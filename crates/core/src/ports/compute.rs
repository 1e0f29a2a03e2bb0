//! Launching and ending runner VMs (EC2 on AWS, processes locally), the JIT
//! parameters they read, the command that bootstraps them, and the delayed queue
//! that drives the bootstrap step.

use super::PortError;
use crate::config::{Architecture, CapacityType};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Tag keys on every resource a deployment owns.
pub mod tags {
    pub const DEPLOYMENT: &str = "spotrunner:deployment";
    pub const POOL: &str = "spotrunner:pool";
    pub const JOB_ID: &str = "spotrunner:job-id";
    pub const RUNNER_NAME: &str = "spotrunner:runner-name";
    pub const TAINTED: &str = "spotrunner:tainted";
    /// What a sized job asked (`cpu=8 ram=32`, `crate::sizing::JobSize::summary`).
    pub const SIZE: &str = "spotrunner:size";
    /// On a JIT parameter: the only instance that may read it (the in-memory
    /// and local stores; SSM uses [`INSTANCE_ARN`]).
    pub const INSTANCE_ID: &str = "spotrunner:instance-id";
    /// On a JIT SSM parameter: the ARN of the only instance that may read it.
    /// The runner role's IAM grant compares it with the caller's
    /// `ec2:SourceInstanceARN` (terraform/ec2.tf).
    pub const INSTANCE_ARN: &str = "spotrunner:instance-arn";
}

/// One VM for one runner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchRequest {
    pub runner_name: String,
    pub pool: String,
    pub launch_template: String,
    pub instance_types: Vec<String>,
    pub subnets: Vec<String>,
    pub capacity_type: CapacityType,
    /// Idempotency token: a retry with the same token never starts a second VM.
    pub client_token: String,
    pub tags: Vec<(String, String)>,
    /// A sized job's instance requirements (`crate::sizing`): the VM is chosen
    /// by them instead of from `instance_types`.
    pub size: Option<InstanceSize>,
}

/// Which instances a sized launch may get (EC2's attribute-based instance
/// type selection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSize {
    pub vcpu_min: u32,
    pub vcpu_max: u32,
    pub memory_mib_min: u32,
    pub memory_mib_max: Option<u32>,
    /// Patterns like `c7i.*`; empty: any type.
    pub allowed_instance_types: Vec<String>,
}

impl InstanceSize {
    /// `8 vCPU, >= 32768 MiB, types c7i.* m7i.*`.
    pub fn describe(&self) -> String {
        let vcpu = if self.vcpu_min == self.vcpu_max {
            format!("{} vCPU", self.vcpu_min)
        } else {
            format!("{}-{} vCPU", self.vcpu_min, self.vcpu_max)
        };
        let mem = match self.memory_mib_max {
            Some(max) => format!("{}-{max} MiB", self.memory_mib_min),
            None => format!(">= {} MiB", self.memory_mib_min),
        };
        let types = if self.allowed_instance_types.is_empty() {
            "any type".to_string()
        } else {
            format!("types {}", self.allowed_instance_types.join(" "))
        };
        format!("{vcpu}, {mem}, {types}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchOutcome {
    Launched {
        instance_id: String,
        capacity_type: CapacityType,
    },
    /// No capacity of this type now (`InsufficientInstanceCapacity` and kin).
    NoCapacity { code: String, message: String },
}

/// A VM of this deployment as the cloud lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, `stopping`, `stopped`.
    pub state: String,
    pub launched_at: Option<DateTime<Utc>>,
    pub tags: Vec<(String, String)>,
}

impl Instance {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn is_live(&self) -> bool {
        !matches!(self.state.as_str(), "shutting-down" | "terminated")
    }
}

#[async_trait]
pub trait Compute: Send + Sync {
    async fn launch(&self, req: &LaunchRequest) -> Result<LaunchOutcome, PortError>;
    /// Terminating an instance that is already gone is success.
    async fn terminate(&self, instance_ids: &[String]) -> Result<(), PortError>;
    /// Every instance tagged with this deployment, all pages.
    async fn list_instances(&self, deployment: &str) -> Result<Vec<Instance>, PortError>;
    /// The instances among `instance_ids` that the cloud still knows (any state,
    /// any deployment: callers check the tags). Unknown ids are left out.
    /// The default lists this deployment's instances and filters them.
    async fn describe(
        &self,
        deployment: &str,
        instance_ids: &[String],
    ) -> Result<Vec<Instance>, PortError> {
        Ok(self
            .list_instances(deployment)
            .await?
            .into_iter()
            .filter(|i| instance_ids.contains(&i.instance_id))
            .collect())
    }
    async fn tag_instance(
        &self,
        instance_id: &str,
        key: &str,
        value: &str,
    ) -> Result<(), PortError>;
}

/// The JIT config's parameter (SSM SecureString on AWS).
#[async_trait]
pub trait RunnerParameters: Send + Sync {
    /// Store (overwrite) the value; the value is never logged.
    async fn put(
        &self,
        name: &str,
        value: &str,
        tags: &[(String, String)],
    ) -> Result<(), PortError>;
    async fn exists(&self, name: &str) -> Result<bool, PortError>;
    /// From now on only this instance may read (and delete) the parameter: on
    /// SSM a `spotrunner:instance-arn` tag that the runner role's IAM
    /// condition matches against the caller's instance.
    async fn bind_to_instance(&self, name: &str, instance_id: &str) -> Result<(), PortError>;
    /// Deleting a parameter that is already gone is success.
    async fn delete(&self, name: &str) -> Result<(), PortError>;
    /// Names under a prefix (the janitor's leak hunt).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError>;
}

/// What the bootstrap command gets: names and locations, never the JIT value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapCommand {
    pub instance_id: String,
    pub runner_name: String,
    pub jit_parameter: String,
    pub max_run_time_secs: u64,
    pub startup_script_key: Option<String>,
    /// Which runner tarball the VM downloads (the pool's architecture).
    pub runner_arch: Architecture,
    /// The Linux user the runner runs as (the pool's `runner_user`: created
    /// with passwordless sudo on the VM; `root` runs jobs as root).
    pub runner_user: String,
    /// Install the runner even without a verified SHA-256 (the pool's
    /// `allow_unverified_runner`; false: no checksum, no runner).
    pub allow_unverified_runner: bool,
    /// The command is not sent after this moment (the adapter checks right
    /// before the call): past it, another step may already be sending one.
    pub send_by: DateTime<Utc>,
}

/// The longest a `send_bootstrap` call may take once it started (the AWS
/// adapter's operation timeout): with [`BootstrapCommand::send_by`] it bounds
/// when a command sent by one step can reach the command service.
pub const BOOTSTRAP_SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent {
        command_id: String,
    },
    /// The instance's agent is not registered yet (`InvalidInstanceId`).
    NotReady,
    /// `send_by` had passed: nothing was sent.
    TooLate,
}

#[async_trait]
pub trait Commands: Send + Sync {
    /// Not idempotent: every call may start the runner command again.
    async fn send_bootstrap(&self, cmd: &BootstrapCommand) -> Result<SendOutcome, PortError>;
    /// The newest bootstrap command (our document) for `runner_name` sent to
    /// `instance_id`, if the command service knows one: how a retried step
    /// finds the command an earlier step sent before its answer was lost.
    async fn find_bootstrap(
        &self,
        instance_id: &str,
        runner_name: &str,
    ) -> Result<Option<String>, PortError>;
}

/// The delayed message that drives the bootstrap step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapMessage {
    pub version: u32,
    pub job_id: u64,
    pub runner_name: String,
    pub instance_id: String,
    pub pool: String,
    pub launched_at: DateTime<Utc>,
    pub tries: u32,
    /// Not before this moment: a step that finds the runner `bootstrapping`
    /// with no command listed resends no earlier (set by versions before the
    /// resend waited on the record's own time; honoured, no longer set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_after: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait BootstrapQueue: Send + Sync {
    async fn schedule(&self, msg: &BootstrapMessage, delay: Duration) -> Result<(), PortError>;
}
