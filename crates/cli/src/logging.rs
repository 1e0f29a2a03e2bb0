//! Logs: JSON lines on stderr for `serve` (one level from `RUST_LOG`, default
//! `info`); only warnings for the operator commands, whose output is on stdout.

use tracing_subscriber::filter::LevelFilter;

fn level(default: LevelFilter) -> LevelFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(default)
}

pub fn init_json() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level(LevelFilter::INFO))
        .with_current_span(true)
        .flatten_event(true)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn init_quiet() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level(LevelFilter::WARN))
        .flatten_event(true)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}
