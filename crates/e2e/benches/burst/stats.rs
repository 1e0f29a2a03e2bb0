//! Percentiles, busy-time integrals and the JSON record of one case.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Seconds from `t0` to `t` (negative when before).
pub fn secs(t0: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    (t - t0).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// p50/p90/p99/max/mean of `values` (seconds), in milliseconds, as JSON.
pub fn summary_ms(values: &[f64]) -> Value {
    if values.is_empty() {
        return json!({ "n": 0 });
    }
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let pick = |q: f64| {
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        round(v[i] * 1000.0)
    };
    json!({
        "n": v.len(),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(v[v.len() - 1] * 1000.0),
        "mean_ms": round(v.iter().sum::<f64>() / v.len() as f64 * 1000.0),
    })
}

pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Busy time of intervals `[a, b)` (seconds) inside `[from, to)`.
pub fn overlap(intervals: &[(f64, f64)], from: f64, to: f64) -> f64 {
    intervals
        .iter()
        .map(|&(a, b)| (b.min(to) - a.max(from)).max(0.0))
        .sum()
}

/// A step function sampled at times `t` (seconds, increasing): its integral
/// over `[from, to)`, each value holding until the next sample.
pub fn integral(samples: &[(f64, f64)], from: f64, to: f64) -> f64 {
    let mut total = 0.0;
    for (i, &(t, v)) in samples.iter().enumerate() {
        let next = samples.get(i + 1).map_or(to, |s| s.0);
        let (a, b) = (t.max(from), next.min(to));
        if b > a {
            total += v * (b - a);
        }
    }
    total
}

/// Capacity utilisation at saturation: the saturated period runs from the
/// first moment every slot is taken (`first_full`, from the samples of the
/// pool counter) to the last launch (after it no job waits, so demand no
/// longer fills the pool). Busy slot-seconds ÷ (max_runners × period), for
/// three notions of "busy": the pool counter (slot reserved → released), the
/// instance (launch requested → ended) and the job itself (runner reported
/// its start → its end).
pub fn utilisation(
    max_runners: u32,
    counter: &[(f64, f64)],
    instances: &[(f64, f64)],
    jobs: &[(f64, f64)],
    last_launch: f64,
) -> Value {
    let peak = counter.iter().map(|s| s.1).fold(0.0, f64::max);
    let Some(first_full) = counter
        .iter()
        .find(|s| s.1 >= f64::from(max_runners))
        .map(|s| s.0)
    else {
        return json!({
            "saturated": false,
            "peak_slots_used": peak,
            "note": "the pool never filled: no saturated period",
        });
    };
    let period = last_launch - first_full;
    if period <= 0.0 {
        return json!({ "saturated": false, "peak_slots_used": peak,
                       "note": "full only after the last launch" });
    }
    let cap = f64::from(max_runners) * period;
    json!({
        "saturated": true,
        "peak_slots_used": peak,
        "period_s": round3(period),
        "from_s": round3(first_full),
        "to_s": round3(last_launch),
        "slots": round3(integral(counter, first_full, last_launch) / cap),
        "instances": round3(overlap(instances, first_full, last_launch) / cap),
        "jobs": round3(overlap(jobs, first_full, last_launch) / cap),
    })
}

/// The runner name's job id: `{deployment}_{pool}-{job}-{attempt}`.
pub fn job_of_runner(name: &str) -> Option<u64> {
    let mut parts = name.rsplitn(3, '-');
    let _attempt = parts.next()?;
    parts.next()?.parse().ok()
}
