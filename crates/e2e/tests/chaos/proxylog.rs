//! Reading the AWS proxy's records: what reached moto, from which handler.

use spotrunner_core::ports::tags;
use spotrunner_testkit::fault_proxy::{Record, form_pairs};
use std::collections::BTreeMap;

/// A `SendCommand` that moto received and answered.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub seq: u64,
    pub command_id: String,
    pub front: String,
    /// The caller got the answer (not lost).
    pub answered: bool,
    /// The SDK call it belongs to, and the SDK's attempt number.
    pub invocation: String,
    pub attempt: u32,
}

/// Applied `SendCommand`s by instance, oldest first.
pub fn send_commands(records: &[Record]) -> BTreeMap<String, Vec<Cmd>> {
    let mut out: BTreeMap<String, Vec<Cmd>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.op == "SendCommand" && r.reached_upstream)
    {
        let req: serde_json::Value =
            serde_json::from_str(r.request_body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let resp: serde_json::Value =
            serde_json::from_str(r.upstream_body.as_deref().unwrap_or("{}")).unwrap_or_default();
        let (Some(instance), Some(id)) = (
            req["InstanceIds"][0].as_str(),
            resp["Command"]["CommandId"].as_str(),
        ) else {
            continue;
        };
        out.entry(instance.to_string()).or_default().push(Cmd {
            seq: r.seq,
            command_id: id.to_string(),
            front: r.front.clone(),
            answered: r.status == Some(200),
            invocation: r.sdk_invocation.clone().unwrap_or_default(),
            attempt: r.sdk_attempt.unwrap_or(0),
        });
    }
    out
}

/// Instances in applied `TerminateInstances` calls: (seq, instance, front).
pub fn terminations(records: &[Record]) -> Vec<(u64, String, String)> {
    records
        .iter()
        .filter(|r| r.op == "TerminateInstances" && r.reached_upstream)
        .flat_map(|r| {
            form_pairs(r.request_body.as_deref().unwrap_or(""))
                .into_iter()
                .filter(|(k, _)| k.starts_with("InstanceId."))
                .map(move |(_, v)| (r.seq, v, r.front.clone()))
        })
        .collect()
}

/// One `CreateFleet` call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Launch {
    pub seq: u64,
    pub client_token: String,
    pub reached_moto: bool,
    pub replayed: bool,
    pub mismatch: bool,
    pub fault: Option<&'static str>,
}

/// `CreateFleet` calls by the runner-name tag they carry.
pub fn launches(records: &[Record]) -> BTreeMap<String, Vec<Launch>> {
    let mut out: BTreeMap<String, Vec<Launch>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.op == "CreateFleet") {
        let pairs = form_pairs(r.request_body.as_deref().unwrap_or(""));
        let value = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let runner = pairs
            .iter()
            .find(|(k, v)| k.ends_with(".Key") && v == tags::RUNNER_NAME)
            .and_then(|(k, _)| value(&k.replace(".Key", ".Value")));
        out.entry(runner.unwrap_or_else(|| "?".into()))
            .or_default()
            .push(Launch {
                seq: r.seq,
                client_token: value("ClientToken").unwrap_or_default(),
                reached_moto: r.reached_upstream,
                replayed: r.replayed,
                mismatch: r.mismatch,
                fault: r.fault.map(|f| f.kind()),
            });
    }
    out
}

/// Who deleted each parameter (handler listeners, in order).
pub fn parameter_deletions(records: &[Record]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.op == "DeleteParameter" && r.reached_upstream)
    {
        let req: serde_json::Value =
            serde_json::from_str(r.request_body.as_deref().unwrap_or("{}")).unwrap_or_default();
        if let Some(name) = req["Name"].as_str() {
            out.entry(name.to_string())
                .or_default()
                .push(r.front.clone());
        }
    }
    out
}

/// Ledger writes that lost their answer and were then refused: what a write
/// mentioning `key` (e.g. `runner#NAME`) went through, in order, for each SDK
/// call that had a lost answer: "seq op attempt fault -> status".
pub fn lost_ledger_writes(records: &[Record], key: &str) -> Vec<String> {
    let quoted = format!("\"{key}\"");
    let writes: Vec<&Record> = records
        .iter()
        .filter(|r| {
            matches!(
                r.op.as_str(),
                "PutItem" | "UpdateItem" | "TransactWriteItems"
            )
        })
        .filter(|r| {
            r.request_body
                .as_deref()
                .is_some_and(|b| b.contains(&quoted))
        })
        .collect();
    let lost: std::collections::BTreeSet<&str> = writes
        .iter()
        .filter(|r| matches!(r.fault, Some(f) if f.kind().starts_with("lost")))
        .filter_map(|r| r.sdk_invocation.as_deref())
        .collect();
    writes
        .iter()
        .filter(|r| {
            r.sdk_invocation
                .as_deref()
                .is_some_and(|i| lost.contains(i))
        })
        .map(|r| {
            format!(
                "seq {} {} by {} attempt {} {} -> {}",
                r.seq,
                r.op,
                r.front,
                r.sdk_attempt.unwrap_or(0),
                r.fault.map_or("ok", |f| f.kind()),
                r.upstream_status
                    .map_or("not applied".to_string(), |s| format!("applied, {s}"))
                    + if r
                        .upstream_body
                        .as_deref()
                        .is_some_and(|b| b.contains("ConditionalCheckFailed"))
                    {
                        " ConditionalCheckFailed"
                    } else {
                        ""
                    }
            )
        })
        .collect()
}
