//! CloudWatch metrics as Embedded Metric Format lines on stdout: the Lambda
//! runtime ships stdout to CloudWatch Logs, which turns these lines into metrics
//! (no PutMetricData call, no extra permission, no latency).
//!
//! Two ways in, one format out:
//!
//! - **Events** (the way core publishes, with no AWS dependency): every tracing
//!   event with a `metric` field is collected by [`MetricsLayer`] (installed by
//!   [`crate::runtime::init_tracing`]) during one invocation and printed when
//!   the invocation ends ([`invocation`]'s guard, or [`flush`]). The field
//!   contract:
//!   - `metric` = the metric's name (string);
//!   - `value` = a number (default 1);
//!   - `unit` = `"Count"` (default: summed per series and flush) or
//!     `"Milliseconds"` (every value kept, published as an EMF value array of at
//!     most [`MAX_VALUES_PER_LINE`] values per line, so CloudWatch computes
//!     percentiles);
//!   - dimensions: only the fields named in [`DIMENSIONS`] (`pool`, `reason`,
//!     `capacity`, `stage`) present on the event, after `deployment` and
//!     `function`, which every line has. `reason` is cut to 64 characters and
//!     anything but `[A-Za-z0-9_-]` becomes `_` (bounded cardinality).
//! - **Reports** ([`emit`]): a function that has totals at hand (janitor,
//!   dlq-mover, recovery) prints one line directly.
//!
//! Lines are stamped with the wall clock when printed, not with a handler's
//! `now` (`spotrunner_core::clock`): CloudWatch drops EMF timestamps more than
//! two weeks in the past or two hours in the future of its own time.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// The namespace every spotrunner metric is published under.
pub const NAMESPACE: &str = "spotrunner";

/// The event fields that become dimensions (in this order, after `deployment`
/// and `function`); any other field is left to the log line.
pub const DIMENSIONS: [&str; 4] = ["pool", "reason", "capacity", "stage"];

/// EMF takes at most 100 values per metric and document.
pub const MAX_VALUES_PER_LINE: usize = 100;

/// `reason` values are cut to this many characters.
pub const MAX_REASON_CHARS: usize = 64;

/// One EMF document: `metrics` are counts, `dimensions` name the series
/// (always including `deployment` and `function`).
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[(&str, f64)], now_millis: i64) -> String {
    let metrics: Vec<(&str, Unit, Value)> = metrics
        .iter()
        .map(|(k, v)| (*k, Unit::Count, json!(v)))
        .collect();
    emf_doc(dimensions, &metrics, now_millis).to_string()
}

fn emf_doc(dimensions: &[(&str, &str)], metrics: &[(&str, Unit, Value)], now_millis: i64) -> Value {
    let mut doc = Map::new();
    for (k, v) in dimensions {
        doc.insert((*k).to_string(), Value::String((*v).to_string()));
    }
    for (k, _, v) in metrics {
        doc.insert((*k).to_string(), v.clone());
    }
    let dims: Vec<&str> = dimensions.iter().map(|(k, _)| *k).collect();
    let defs: Vec<Value> = metrics
        .iter()
        .map(|(k, unit, _)| json!({"Name": k, "Unit": unit.as_str()}))
        .collect();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_millis,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [dims], "Metrics": defs}],
        }),
    );
    Value::Object(doc)
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

/// A metric's unit: counts are summed, milliseconds kept one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }

    /// `Milliseconds` (any case), else `Count`.
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some(u) if u.eq_ignore_ascii_case("milliseconds") => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }
}

/// `reason`: at most [`MAX_REASON_CHARS`] characters of `[A-Za-z0-9_-]`
/// (anything else becomes `_`).
pub fn sanitize_reason(reason: &str) -> String {
    reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One series: the dimension values present (in [`DIMENSIONS`] order), the
/// name and the unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    dims: DimValues,
    name: String,
    unit: Unit,
}

#[derive(Debug)]
enum Aggregate {
    Sum(f64),
    Values(Vec<f64>),
}

type Output = Arc<dyn Fn(&str) + Send + Sync>;

/// Dimension values present on an event, in [`DIMENSIONS`] order.
type DimValues = Vec<(&'static str, String)>;
/// One metric of a line: name, unit, value (a number or an array).
type Entry<'a> = (&'a str, Unit, Value);
/// The entries of one set of dimension values.
type Group = (DimValues, Vec<(String, Unit, Value)>);

/// Collects the metric events of one invocation; [`MetricsLayer::flush`]
/// prints them as EMF lines (stdout unless [`MetricsLayer::with_output`]).
/// Install it with [`MetricsLayer::filtered`] so it sees every metric event
/// whatever the log level, and nothing else.
pub struct MetricsLayer {
    function: String,
    deployment: RwLock<String>,
    batch: Mutex<BTreeMap<Series, Aggregate>>,
    output: Output,
}

impl MetricsLayer {
    /// For the Lambda `function` (the `function` dimension: `webhook`, …).
    pub fn new(function: &str) -> Self {
        Self {
            function: function.to_string(),
            deployment: RwLock::new("unknown".into()),
            batch: Mutex::new(BTreeMap::new()),
            output: Arc::new(|line| println!("{line}")),
        }
    }

    /// Send the lines to `output` instead of stdout (tests).
    pub fn with_output(mut self, output: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.output = Arc::new(output);
        self
    }

    /// The layer behind its filter: only events with a `metric` field, at any level.
    pub fn filtered<S>(self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        self.with_filter(MetricEvents)
    }

    /// The `deployment` dimension (from the configuration document).
    pub fn set_deployment(&self, deployment: &str) {
        *self.deployment.write().unwrap_or_else(|e| e.into_inner()) = deployment.to_string();
    }

    /// Count one metric event.
    pub fn record(&self, name: &str, value: f64, unit: Unit, dims: Vec<(&'static str, String)>) {
        if !value.is_finite() {
            return;
        }
        let series = Series {
            dims,
            name: name.to_string(),
            unit,
        };
        let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        let agg = batch.entry(series).or_insert_with(|| match unit {
            Unit::Count => Aggregate::Sum(0.0),
            Unit::Milliseconds => Aggregate::Values(Vec::new()),
        });
        match agg {
            Aggregate::Sum(s) => *s += value,
            Aggregate::Values(v) => v.push(value),
        }
    }

    /// Take what was collected since the last call, as EMF lines: one line
    /// per set of dimension values (counts summed, milliseconds as arrays);
    /// more lines when an array holds over [`MAX_VALUES_PER_LINE`] values.
    pub fn take_lines(&self, now_millis: i64) -> Vec<String> {
        let batch = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|e| e.into_inner()));
        let deployment = self
            .deployment
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Group the series by their dimension values (adjacent: dims sort first).
        let mut groups: Vec<Group> = Vec::new();
        for (series, agg) in batch {
            let entries: Vec<Value> = match agg {
                Aggregate::Sum(s) => vec![json!(s)],
                Aggregate::Values(v) => v
                    .chunks(MAX_VALUES_PER_LINE)
                    .map(|c| Value::from(c.to_vec()))
                    .collect(),
            };
            if groups.last().is_none_or(|(d, _)| *d != series.dims) {
                groups.push((series.dims.clone(), Vec::new()));
            }
            let group = &mut groups.last_mut().expect("pushed above").1;
            group.extend(
                entries
                    .into_iter()
                    .map(|v| (series.name.clone(), series.unit, v)),
            );
        }
        let mut out = Vec::new();
        for (dims, entries) in groups {
            let mut dimensions: Vec<(&str, &str)> = vec![
                ("deployment", deployment.as_str()),
                ("function", self.function.as_str()),
            ];
            dimensions.extend(dims.iter().map(|(k, v)| (*k, v.as_str())));
            // A name appears once per document: a second chunk (or the same
            // name in another unit) goes to the next line.
            let mut docs: Vec<(BTreeSet<&str>, Vec<Entry>)> = Vec::new();
            for (name, unit, value) in &entries {
                let slot = match docs
                    .iter()
                    .position(|(names, _)| !names.contains(name.as_str()))
                {
                    Some(i) => i,
                    None => {
                        docs.push(Default::default());
                        docs.len() - 1
                    }
                };
                docs[slot].0.insert(name);
                docs[slot].1.push((name, *unit, value.clone()));
            }
            for (_, metrics) in docs {
                out.push(emf_doc(&dimensions, &metrics, now_millis).to_string());
            }
        }
        out
    }

    /// Print what was collected (nothing when nothing was).
    pub fn flush(&self) {
        for line in self.take_lines(chrono::Utc::now().timestamp_millis()) {
            (self.output)(&line);
        }
    }
}

impl<S: Subscriber> Layer<S> for MetricsLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if !is_metric(event.metadata()) {
            return;
        }
        let mut fields = MetricFields::default();
        event.record(&mut fields);
        let Some(name) = fields.metric.filter(|n| !n.is_empty()) else {
            return;
        };
        let dims = DIMENSIONS
            .iter()
            .zip(fields.dims)
            .filter_map(|(k, v)| {
                let v = v?;
                let v = if *k == "reason" {
                    sanitize_reason(&v)
                } else {
                    v
                };
                Some((*k, if v.is_empty() { "none".into() } else { v }))
            })
            .collect();
        self.record(
            &name,
            fields.value.unwrap_or(1.0),
            Unit::parse(fields.unit.as_deref()),
            dims,
        );
    }
}

fn is_metric(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.fields().field("metric").is_some()
}

/// The [`MetricsLayer`]'s filter: events with a `metric` field, any level.
pub struct MetricEvents;

impl<S> Filter<S> for MetricEvents {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        is_metric(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_metric(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

#[derive(Default)]
struct MetricFields {
    metric: Option<String>,
    value: Option<f64>,
    unit: Option<String>,
    dims: [Option<String>; DIMENSIONS.len()],
}

impl MetricFields {
    fn set(&mut self, name: &str, text: String) {
        match name {
            "metric" => self.metric = Some(text),
            "unit" => self.unit = Some(text),
            "value" => self.value = text.trim().parse().ok(),
            _ => {
                if let Some(i) = DIMENSIONS.iter().position(|d| *d == name) {
                    self.dims[i] = Some(text);
                }
            }
        }
    }

    fn wanted(name: &str) -> bool {
        matches!(name, "metric" | "unit" | "value") || DIMENSIONS.contains(&name)
    }
}

impl Visit for MetricFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "value" {
            self.value = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == "value" {
            self.value = Some(value as f64);
        } else if Self::wanted(field.name()) {
            self.set(field.name(), value.to_string());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "value" {
            self.value = Some(value as f64);
        } else if Self::wanted(field.name()) {
            self.set(field.name(), value.to_string());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if Self::wanted(field.name()) {
            self.set(field.name(), value.to_string());
        }
    }

    /// `%display` values (and `?debug` ones, quotes dropped).
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if Self::wanted(field.name()) {
            let text = format!("{value:?}");
            let text = text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .map(str::to_string)
                .unwrap_or(text);
            self.set(field.name(), text);
        }
    }
}

/// Run `f` with the [`MetricsLayer`] of the current subscriber, if it has one.
fn with_layer(mut f: impl FnMut(&MetricsLayer)) {
    tracing::dispatcher::get_default(|d| {
        if let Some(layer) = d.downcast_ref::<MetricsLayer>() {
            f(layer)
        }
    });
}

/// Print the metrics collected so far (no-op without a [`MetricsLayer`]).
pub fn flush() {
    with_layer(MetricsLayer::flush);
}

/// Set the `deployment` dimension (no-op without a [`MetricsLayer`]).
pub fn set_deployment(deployment: &str) {
    with_layer(|l| l.set_deployment(deployment));
}

/// Flushes the metrics when dropped: hold one for the length of an invocation
/// (`let _metrics = metrics::invocation();`), so every way out — an answer,
/// an error, a panic unwinding — prints what the invocation counted.
#[must_use = "the metrics are flushed when this guard is dropped"]
pub struct InvocationGuard(());

/// See [`InvocationGuard`].
pub fn invocation() -> InvocationGuard {
    InvocationGuard(())
}

impl Drop for InvocationGuard {
    fn drop(&mut self) {
        flush();
    }
}

#[cfg(test)]
mod tests;
