use super::*;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

const TS: i64 = 1_700_000_000_000;

/// Run `f` under a subscriber with the layer (and a log layer at INFO, as in a
/// Lambda), then take the lines at `TS`, parsed.
fn capture(f: impl FnOnce()) -> Vec<Value> {
    let layer = MetricsLayer::new("webhook");
    layer.set_deployment("sr");
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(LevelFilter::INFO),
        )
        .with(layer.filtered());
    let mut lines = Vec::new();
    tracing::subscriber::with_default(subscriber, || {
        f();
        with_layer(|l| lines = l.take_lines(TS));
    });
    lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("an EMF line is JSON"))
        .collect()
}

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

#[test]
fn one_event_becomes_one_exact_emf_line() {
    let lines = capture(|| {
        tracing::info!(
            metric = "webhook_accepted",
            pool = "k8s",
            job_id = 7u64,
            "accepted"
        )
    });
    assert_eq!(
        lines,
        vec![json!({
            "deployment": "sr",
            "function": "webhook",
            "pool": "k8s",
            "webhook_accepted": 1.0,
            "_aws": {
                "Timestamp": TS,
                "CloudWatchMetrics": [{
                    "Namespace": "spotrunner",
                    "Dimensions": [["deployment", "function", "pool"]],
                    "Metrics": [{"Name": "webhook_accepted", "Unit": "Count"}]
                }]
            }
        })]
    );
}

#[test]
fn counts_of_one_series_are_summed_and_series_stay_apart() {
    let lines = capture(|| {
        for _ in 0..3 {
            tracing::info!(metric = "jobs_launched", pool = "a", capacity = "spot");
        }
        tracing::info!(
            metric = "jobs_launched",
            pool = "a",
            capacity = "spot",
            value = 2.5
        );
        tracing::warn!(metric = "jobs_launched", pool = "a", capacity = "on_demand");
        let pool = String::from("b");
        tracing::info!(metric = "jobs_launched", pool = %pool, capacity = "spot", value = 4u64);
        // Same dimension values, another metric: the same line.
        tracing::info!(metric = "jobs_waiting", pool = "a", capacity = "spot");
    });
    let find = |pool: &str, capacity: &str| {
        lines
            .iter()
            .find(|l| l["pool"] == pool && l["capacity"] == capacity)
            .unwrap_or_else(|| panic!("no line for {pool}/{capacity}: {lines:?}"))
    };
    assert_eq!(lines.len(), 3, "{lines:?}");
    let a_spot = find("a", "spot");
    assert_eq!(a_spot["jobs_launched"], 5.5);
    assert_eq!(a_spot["jobs_waiting"], 1.0);
    assert_eq!(
        a_spot["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["deployment", "function", "pool", "capacity"]])
    );
    assert_eq!(find("a", "on_demand")["jobs_launched"], 1.0);
    assert_eq!(find("b", "spot")["jobs_launched"], 4.0);
}

#[test]
fn milliseconds_are_value_arrays_of_at_most_100() {
    let lines = capture(|| {
        for i in 0..150u64 {
            tracing::info!(
                metric = "stage_ms",
                unit = "Milliseconds",
                value = i,
                pool = "a",
                stage = "waiting"
            );
        }
        tracing::info!(
            metric = "queue_time_ms",
            unit = "Milliseconds",
            value = 12.5,
            pool = "a"
        );
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    let stage: Vec<&Value> = lines.iter().filter(|l| l["stage"] == "waiting").collect();
    assert_eq!(stage.len(), 2);
    let first: Vec<f64> = (0..100).map(|i| i as f64).collect();
    let rest: Vec<f64> = (100..150).map(|i| i as f64).collect();
    assert_eq!(stage[0]["stage_ms"], json!(first));
    assert_eq!(stage[1]["stage_ms"], json!(rest));
    for l in &stage {
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "stage_ms", "Unit": "Milliseconds"}])
        );
    }
    let queue = lines
        .iter()
        .find(|l| l.get("queue_time_ms").is_some())
        .unwrap();
    assert_eq!(queue["queue_time_ms"], json!([12.5]));
    assert_eq!(
        queue["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["deployment", "function", "pool"]])
    );
}

#[test]
fn only_allow_listed_fields_are_dimensions_and_reasons_are_sanitised() {
    let long = "GitHub said: 422 Unprocessable Entity — the runner group does not exist, \
                nor does anything else";
    let lines = capture(|| {
        tracing::error!(
            metric = "jobs_dropped",
            reason = long,
            job_id = 9u64,
            runner_name = "sr_a-9-1",
            repository = "o/r",
            "dropped"
        );
        tracing::info!(metric = "webhook_ignored", reason = "not_workflow_job");
        tracing::info!(job_id = 1u64, pool = "a", "no metric field: not a metric");
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let dropped = lines
        .iter()
        .find(|l| l.get("jobs_dropped").is_some())
        .unwrap();
    let reason = dropped["reason"].as_str().unwrap();
    assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    assert!(reason.starts_with("GitHub_said__422_Unprocessable_Entity___the_runner"));
    assert!(
        reason
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{reason}"
    );
    assert_eq!(
        dropped["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["deployment", "function", "reason"]])
    );
    for field in ["job_id", "runner_name", "repository"] {
        assert!(dropped.get(field).is_none(), "{field} is not a dimension");
    }
    let ignored = lines
        .iter()
        .find(|l| l.get("webhook_ignored").is_some())
        .unwrap();
    assert_eq!(ignored["reason"], "not_workflow_job");
}

#[test]
fn metric_events_below_the_log_level_still_count() {
    let lines = capture(|| {
        tracing::debug!(metric = "capacity_used", value = 3u64, pool = "a");
        tracing::trace!(metric = "capacity_max", value = 8u64, pool = "a");
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["capacity_used"], 3.0);
    assert_eq!(lines[0]["capacity_max"], 8.0);
}

#[test]
fn the_guard_flushes_to_the_output_once_and_empties_the_batch() {
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = out.clone();
    let layer =
        MetricsLayer::new("janitor").with_output(move |l| sink.lock().unwrap().push(l.into()));
    let subscriber = tracing_subscriber::registry().with(layer.filtered());
    tracing::subscriber::with_default(subscriber, || {
        set_deployment("sr-prod");
        {
            let _metrics = invocation();
            tracing::info!(metric = "runners_ended", reason = "exit");
        }
        assert_eq!(out.lock().unwrap().len(), 1);
        // Nothing new: nothing printed.
        flush();
        assert_eq!(out.lock().unwrap().len(), 1);
    });
    let line: Value = serde_json::from_str(&out.lock().unwrap()[0]).unwrap();
    assert_eq!(line["deployment"], "sr-prod");
    assert_eq!(line["function"], "janitor");
    assert_eq!(line["runners_ended"], 1.0);
    // Without a metrics layer, flushing is a no-op.
    flush();
}

#[test]
fn sanitize_reason_keeps_safe_characters() {
    assert_eq!(sanitize_reason("boot_timeout-2"), "boot_timeout-2");
    assert_eq!(sanitize_reason("a b/c:é"), "a_b_c__");
    assert_eq!(sanitize_reason(&"x".repeat(100)).len(), 64);
}
