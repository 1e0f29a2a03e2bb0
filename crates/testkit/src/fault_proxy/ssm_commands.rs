//! SSM commands as AWS keeps them, which moto does not: moto's SendCommand
//! resolves the absent `Targets` of a command sent by `InstanceIds` as "every
//! instance in the region" and adds them all to the command, so `ListCommands`
//! with an `InstanceId` filter returns every command ever sent. AWS keeps the
//! instances the command was sent to. The proxy remembers them for the commands
//! it forwards and puts them back into the answers of `SendCommand` and
//! `ListCommands` (dropping, under an `InstanceId` filter, the commands that
//! were not sent to that instance).

use super::shape::Answer;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;

/// Command id → the instance ids it was sent to.
pub(crate) type Sent = HashMap<String, Vec<String>>;

/// The SSM operations whose answers are corrected.
pub(crate) const CORRECTED: [&str; 2] = ["SendCommand", "ListCommands"];

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str().map(String::from))
        .collect()
}

fn fix(command: &mut Value, instances: &[String]) {
    let n = instances.len();
    command["InstanceIds"] = Value::from(instances.to_vec());
    for count in ["TargetCount", "CompletedCount"] {
        if command.get(count).is_some() {
            command[count] = Value::from(n);
        }
    }
}

/// Correct a forwarded `op` call's answer; remember what `SendCommand` was sent to.
pub(crate) fn correct(sent: &mut Sent, op: &str, request: &[u8], answer: &mut Answer) {
    if !(200..300).contains(&answer.status) {
        return;
    }
    let (Ok(req), Ok(mut resp)) = (
        serde_json::from_slice::<Value>(request),
        serde_json::from_slice::<Value>(&answer.body),
    ) else {
        return;
    };
    match op {
        "SendCommand" => {
            let targets = req.get("Targets").and_then(Value::as_array);
            let instances = ids(&req["InstanceIds"]);
            if targets.is_some_and(|t| !t.is_empty()) || instances.is_empty() {
                return;
            }
            let Some(id) = resp["Command"]["CommandId"].as_str().map(String::from) else {
                return;
            };
            fix(&mut resp["Command"], &instances);
            sent.insert(id, instances);
        }
        "ListCommands" => {
            let filter = req["InstanceId"].as_str().map(String::from);
            let Some(commands) = resp.get_mut("Commands").and_then(Value::as_array_mut) else {
                return;
            };
            for c in commands.iter_mut() {
                if let Some(instances) = c["CommandId"].as_str().and_then(|id| sent.get(id)) {
                    fix(c, &instances.clone());
                }
            }
            if let Some(instance) = filter {
                commands.retain(|c| ids(&c["InstanceIds"]).contains(&instance));
            }
        }
        _ => return,
    }
    answer.body = Bytes::from(resp.to_string());
}
