//! spotrunner's core: configuration, domain, ports and handlers as plain async
//! functions over ports. No AWS SDK and no HTTP client live here.

pub mod circuit;
pub mod clock;
pub mod config;
pub mod create_runner;
pub mod dlq_mover;
#[cfg(any(test, feature = "test-support"))]
pub mod fakes;
pub mod github_app;
pub mod hot;
pub mod janitor;
pub mod job;
pub mod ledger;
pub mod matching;
pub mod names;
pub mod pool_task;
pub mod ports;
pub mod recovery;
pub mod rerun;
pub mod runner_cache;
pub mod sizing;
pub mod spot_breaker;
pub mod stop_runner;
pub mod target;
pub mod teardown;
pub mod waiting;
pub mod webhook;

pub use config::Config;
