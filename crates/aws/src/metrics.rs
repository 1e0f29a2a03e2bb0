//! CloudWatch metrics as Embedded Metric Format lines on stdout: the Lambda
//! runtime ships stdout to CloudWatch Logs, which turns these lines into metrics
//! (no PutMetricData call, no extra permission, no latency).

use serde_json::{Map, Value, json};

/// The namespace every spotrunner metric is published under.
pub const NAMESPACE: &str = "spotrunner";

/// One EMF document: `metrics` are counts, `dimensions` name the series
/// (always including `deployment` and `function`).
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, f64)], now_millis: i64) -> String {
    let mut doc = Map::new();
    for (k, v) in dimensions {
        doc.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    for (k, v) in metrics {
        doc.insert((*k).to_string(), json!(v));
    }
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let defs: Vec<Value> = metrics
        .iter()
        .map(|(k, _)| json!({"Name": k, "Unit": "Count"}))
        .collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_millis,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": defs}],
        }),
    );
    Value::Object(doc).to_string()
}

/// Print one EMF line for `metrics` (skipped when there is nothing to publish).
pub fn emit(dimensions: &[(&str, &str)], metrics: &[(&str, f64)]) {
    if metrics.is_empty() {
        return;
    }
    println!(
        "{}",
        emf_line(dimensions, metrics, chrono::Utc::now().timestamp_millis())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_every_metric_and_dimension() {
        let line = emf_line(
            &[("deployment", "sr"), ("function", "dlq-mover")],
            &[("moved", 85.0), ("dropped_stale", 10.0)],
            1_700_000_000_000,
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["deployment"], "sr");
        assert_eq!(v["moved"], 85.0);
        assert_eq!(v["dropped_stale"], 10.0);
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], NAMESPACE);
        assert_eq!(cw["Dimensions"][0], json!(["deployment", "function"]));
        assert_eq!(cw["Metrics"][1]["Name"], "dropped_stale");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000i64);
    }
}
