//! Test harness for spotrunner (dev-dependency only): a moto server per test
//! process, a fake GitHub HTTP server, and GitHub's own webhook examples.

pub mod examples;
pub mod fake_github;
pub mod moto;
