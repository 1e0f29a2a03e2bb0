//! Test harness for spotrunner (dev-dependency only): a moto server per test
//! process, a fake GitHub HTTP server, and GitHub's own webhook examples.

pub mod browser;
pub mod examples;
pub mod fault_proxy;
/// The fake GitHub lives in its own crate so that `spotrunner demo` can ship it.
pub use spotrunner_fake_github as fake_github;
pub mod moto;
