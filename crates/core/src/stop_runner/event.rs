//! The EventBridge events that end a runner, parsed from their JSON.

use serde_json::Value;

pub const COMMAND_STATUS: &str = "EC2 Command Invocation Status-change Notification";
pub const SPOT_INTERRUPTION: &str = "EC2 Spot Instance Interruption Warning";
pub const INSTANCE_STATE: &str = "EC2 Instance State-change Notification";

/// SSM command statuses after which the runner command will not run again.
pub const TERMINAL_COMMAND_STATUSES: [&str; 6] = [
    "Success",
    "Failed",
    "TimedOut",
    "Cancelled",
    "Undeliverable",
    "Terminated",
];

/// Instance states that mean the VM is ending.
pub const ENDING_INSTANCE_STATES: [&str; 2] = ["shutting-down", "terminated"];

/// One event stop-runner acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopEvent {
    /// The runner command on an instance changed status.
    CommandStatus {
        instance_id: String,
        command_id: String,
        document: String,
        status: String,
    },
    /// EC2 reclaims a spot instance in two minutes.
    SpotInterruption { instance_id: String },
    /// An instance changed state.
    InstanceState { instance_id: String, state: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("detail-type {0:?} is not an event stop-runner handles")]
    UnknownType(String),
    #[error("{0}: missing or not a string")]
    Missing(&'static str),
}

impl StopEvent {
    /// Parse an EventBridge event (`detail-type` + `detail`).
    pub fn from_eventbridge(event: &Value) -> Result<Self, EventError> {
        let detail_type = event
            .get("detail-type")
            .and_then(Value::as_str)
            .ok_or(EventError::Missing("detail-type"))?;
        let detail = event.get("detail").unwrap_or(&Value::Null);
        let field = |name: &'static str, path: &'static str| {
            detail
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or(EventError::Missing(path))
        };
        match detail_type {
            COMMAND_STATUS => Ok(Self::CommandStatus {
                instance_id: field("instance-id", "detail.instance-id")?,
                command_id: field("command-id", "detail.command-id")?,
                document: field("document-name", "detail.document-name")?,
                status: field("status", "detail.status")?,
            }),
            SPOT_INTERRUPTION => Ok(Self::SpotInterruption {
                instance_id: field("instance-id", "detail.instance-id")?,
            }),
            INSTANCE_STATE => Ok(Self::InstanceState {
                instance_id: field("instance-id", "detail.instance-id")?,
                state: field("state", "detail.state")?,
            }),
            other => Err(EventError::UnknownType(other.to_string())),
        }
    }

    pub fn instance_id(&self) -> &str {
        match self {
            Self::CommandStatus { instance_id, .. }
            | Self::SpotInterruption { instance_id }
            | Self::InstanceState { instance_id, .. } => instance_id,
        }
    }

    /// A short name for logs and end reasons.
    pub fn describe(&self) -> String {
        match self {
            Self::CommandStatus { status, .. } => format!("runner command {status}"),
            Self::SpotInterruption { .. } => "spot interruption".into(),
            Self::InstanceState { state, .. } => format!("instance {state}"),
        }
    }

    /// Build the EventBridge JSON for this event (tests and the local mode).
    pub fn to_eventbridge(&self) -> Value {
        let (detail_type, detail) = match self {
            Self::CommandStatus {
                instance_id,
                command_id,
                document,
                status,
            } => (
                COMMAND_STATUS,
                serde_json::json!({
                    "command-id": command_id, "document-name": document,
                    "instance-id": instance_id, "status": status,
                    "requested-date-time": "2026-01-01T00:00:00.000Z",
                }),
            ),
            Self::SpotInterruption { instance_id } => (
                SPOT_INTERRUPTION,
                serde_json::json!({"instance-id": instance_id, "instance-action": "terminate"}),
            ),
            Self::InstanceState { instance_id, state } => (
                INSTANCE_STATE,
                serde_json::json!({"instance-id": instance_id, "state": state}),
            ),
        };
        let source = match self {
            Self::CommandStatus { .. } => "aws.ssm",
            _ => "aws.ec2",
        };
        serde_json::json!({
            "version": "0", "id": "00000000-0000-0000-0000-000000000000",
            "detail-type": detail_type, "source": source, "account": "123456789012",
            "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
            "detail": detail,
        })
    }
}

/// The document name from a name or an ARN (`arn:…:document/NAME`).
pub fn document_name(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_each_kind_and_round_trips() {
        for e in [
            StopEvent::CommandStatus {
                instance_id: "i-1".into(),
                command_id: "c-1".into(),
                document: "sr-runner".into(),
                status: "Success".into(),
            },
            StopEvent::SpotInterruption {
                instance_id: "i-2".into(),
            },
            StopEvent::InstanceState {
                instance_id: "i-3".into(),
                state: "terminated".into(),
            },
        ] {
            assert_eq!(StopEvent::from_eventbridge(&e.to_eventbridge()), Ok(e));
        }
    }

    #[test]
    fn names_the_missing_field_and_the_unknown_type() {
        let e = json!({"detail-type": SPOT_INTERRUPTION, "detail": {}});
        assert_eq!(
            StopEvent::from_eventbridge(&e),
            Err(EventError::Missing("detail.instance-id"))
        );
        let e = json!({"detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(
            StopEvent::from_eventbridge(&e).unwrap_err().to_string(),
            "detail-type \"Scheduled Event\" is not an event stop-runner handles"
        );
        assert_eq!(
            StopEvent::from_eventbridge(&json!({})),
            Err(EventError::Missing("detail-type"))
        );
    }

    #[test]
    fn document_name_from_arn() {
        assert_eq!(
            document_name("arn:aws:ssm:us-east-1:1:document/sr-runner"),
            "sr-runner"
        );
        assert_eq!(document_name("sr-runner"), "sr-runner");
    }
}
