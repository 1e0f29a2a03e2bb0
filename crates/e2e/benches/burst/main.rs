//! The burst suite of issue 12 (P2, P3, utilisation), measured from outside:
//!
//! ```text
//! cargo test -p spotrunner-e2e --bench burst -- local [--jobs N] [--max-runners M] [--run-secs S]
//!     [--no-duplicates] [--concurrency C] [--name NAME] [--out FILE]   (needs SPOTRUNNER_BIN)
//! cargo test -p spotrunner-e2e --bench burst -- moto  [same flags]
//! cargo test -p spotrunner-e2e --bench burst -- start [--jobs N] [--hot H] [--max-runners M]
//!     [--name NAME] [--out FILE]   (webhook → job in_progress, N jobs one at a time; needs
//!     SPOTRUNNER_BIN; `--hot` defaults to $BENCH_HOT, else 0; see start.rs)
//! ```
//!
//! Each case appends one JSON line to `--out` (and prints it). `scripts/bench.sh`
//! runs the cases of BENCHMARKS.md. A bench target (`harness = false`), so the
//! normal `cargo test` neither builds nor runs it.

// The moto world helpers the e2e tests use (network, SQS events, parameters).
#[path = "../../tests/common/mod.rs"]
mod common;
mod local;
mod moto;
mod payloads;
mod start;
mod stats;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use payloads::Job;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// One measured case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub backend: String,
    pub jobs: usize,
    pub max_runners: u32,
    /// How long each job runs on its runner.
    pub run_secs: f64,
    pub duplicates: bool,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Give up waiting for the jobs after this long.
    pub deadline_secs: u64,
    /// moto: concurrent create-runner invocations per queue (SQS poller).
    pub pollers: usize,
}

/// What sending the deliveries measured.
pub struct Sent {
    /// Original deliveries: (job index, when it was sent).
    pub originals: Vec<(usize, DateTime<Utc>)>,
    pub latencies_original: Vec<f64>,
    pub latencies_duplicate: Vec<f64>,
    pub statuses: BTreeMap<String, usize>,
}

/// Send every delivery (originals and duplicates, see [`payloads::order`]),
/// `case.concurrency` at once; `send` answers the HTTP status (0: none).
pub async fn send_all<F, Fut>(case: &Case, jobs: &[Arc<Job>], send: F) -> Sent
where
    F: Fn(&Arc<Job>, bool) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let order = payloads::order(jobs.len(), 10, case.duplicates);
    let results: Vec<(usize, bool, DateTime<Utc>, f64, u16)> =
        futures::stream::iter(order.into_iter().map(|(i, dup)| {
            let fut = send(&jobs[i], dup);
            async move {
                let at = Utc::now();
                let t = Instant::now();
                let status = fut.await;
                (i, dup, at, t.elapsed().as_secs_f64(), status)
            }
        }))
        .buffer_unordered(case.concurrency.max(1))
        .collect()
        .await;
    let mut sent = Sent {
        originals: Vec::new(),
        latencies_original: Vec::new(),
        latencies_duplicate: Vec::new(),
        statuses: BTreeMap::new(),
    };
    for (i, dup, at, lat, status) in results {
        *sent.statuses.entry(status.to_string()).or_default() += 1;
        if dup {
            sent.latencies_duplicate.push(lat);
        } else {
            sent.originals.push((i, at));
            sent.latencies_original.push(lat);
        }
    }
    sent
}

fn usage() -> ! {
    eprintln!(
        "usage: burst (local|moto|start) [--jobs N] [--max-runners M] [--run-secs S] [--no-duplicates] \
         [--concurrency C] [--pollers P] [--deadline-secs D] [--hot H] [--name NAME] [--out FILE]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` (release, criterion's flags) runs every bench target: this
    // one only runs when asked for a backend.
    let Some(backend) = args
        .first()
        .filter(|a| matches!(a.as_str(), "local" | "moto" | "start"))
        .cloned()
    else {
        if args.iter().any(|a| a == "--bench") {
            println!("burst: skipped (run it with scripts/bench.sh p2-local|p2-moto)");
            return;
        }
        usage();
    };
    let mut case = Case {
        name: String::new(),
        backend: backend.clone(),
        jobs: 1000,
        max_runners: 50,
        run_secs: 0.2,
        duplicates: true,
        concurrency: 50,
        deadline_secs: 1800,
        pollers: 4,
    };
    let mut out: Option<String> = None;
    let mut hot: u32 = std::env::var("BENCH_HOT")
        .ok()
        .map(|h| h.parse().unwrap_or_else(|_| usage()))
        .unwrap_or(0);
    let (mut jobs_given, mut max_given) = (false, false);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_else(|| usage());
        match a.as_str() {
            "--jobs" => {
                case.jobs = val().parse().unwrap_or_else(|_| usage());
                jobs_given = true;
            }
            "--max-runners" => {
                case.max_runners = val().parse().unwrap_or_else(|_| usage());
                max_given = true;
            }
            "--hot" => hot = val().parse().unwrap_or_else(|_| usage()),
            "--run-secs" => case.run_secs = val().parse().unwrap_or_else(|_| usage()),
            "--concurrency" => case.concurrency = val().parse().unwrap_or_else(|_| usage()),
            "--pollers" => case.pollers = val().parse().unwrap_or_else(|_| usage()),
            "--deadline-secs" => case.deadline_secs = val().parse().unwrap_or_else(|_| usage()),
            "--no-duplicates" => case.duplicates = false,
            "--name" => case.name = val(),
            "--out" => out = Some(val()),
            _ => usage(),
        }
    }
    if backend == "start" {
        // One job at a time: room for it next to the hot runners.
        if !jobs_given {
            case.jobs = 20;
        }
        if !max_given {
            case.max_runners = hot + 2;
        }
        if case.name.is_empty() {
            case.name = if hot > 0 {
                format!("start-hot{hot}")
            } else {
                "start-cold".into()
            };
        }
    }
    if case.name.is_empty() {
        case.name = format!("{backend}-{}x-max{}", case.jobs, case.max_runners);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Utc::now();
    let bin = std::env::var("SPOTRUNNER_BIN").unwrap_or_else(|_| "target/debug/spotrunner".into());
    let result = rt.block_on(async {
        match backend.as_str() {
            "local" => local::run(&case, std::path::Path::new(&bin)).await,
            "start" => start::run(&case, std::path::Path::new(&bin), hot).await,
            _ => moto::run(&case).await,
        }
    });
    let line = if backend == "start" {
        json!({
            "bench": "start-local",
            "case": case.name,
            "at": started.to_rfc3339(),
            "jobs": case.jobs,
            "hot": hot,
            "max_runners": case.max_runners,
            "result": result,
        })
    } else {
        json!({
        "bench": format!("p2-{backend}"),
        "case": case.name,
        "at": started.to_rfc3339(),
        "jobs": case.jobs,
        "duplicates": if case.duplicates { case.jobs } else { 0 },
        "max_runners": case.max_runners,
        "run_secs": case.run_secs,
        "concurrency": case.concurrency,
        "pollers": if backend == "moto" { Some(case.pollers) } else { None },
        "result": result,
        })
    };
    let text = line.to_string();
    println!("{text}");
    if let Some(path) = out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        writeln!(f, "{text}").expect("write the result");
    }
}
