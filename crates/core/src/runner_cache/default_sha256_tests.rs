//! The default version's published checksums are compiled in: a fresh
//! deployment (no release verified by the runner cache yet) sends them, so
//! bootstrap.sh, which installs no runner without a verified SHA-256, can
//! install the default version. Any other version without a verified checksum
//! still gets none.

use super::*;
use crate::fakes::MemoryLedger;
use std::collections::BTreeMap;
use std::sync::Arc;

/// GitHub's published SHA-256s for actions/runner v2.329.0 (its release
/// notes), written out here so the table is checked against them.
const X64_2_329_0: &str = "194f1e1e4bd02f80b7e9633fc546084d8d4e19f3928a324d512ea53430102e1d";
const ARM64_2_329_0: &str = "56768348b3d643a6a29d4ad71e9bdae0dc0ef1eb01afe0f7a8ee097b039bfaaf";

fn unverified(version: &str) -> RunnerPin {
    RunnerPin {
        version: version.into(),
        sha256: BTreeMap::new(),
    }
}

#[test]
fn the_default_version_without_a_verified_checksum_gets_the_published_one() {
    let pin = unverified(DEFAULT_RUNNER_VERSION);
    assert_eq!(pin.sha256_for("x64"), X64_2_329_0);
    assert_eq!(pin.sha256_for("arm64"), ARM64_2_329_0);
    assert_eq!(pin.sha256_for("riscv64"), "", "an unknown architecture");
}

#[test]
fn a_verified_checksum_wins_over_the_compiled_in_one() {
    let verified = "ab".repeat(32);
    let pin = RunnerPin {
        version: DEFAULT_RUNNER_VERSION.into(),
        sha256: [("x64".to_string(), verified.clone())].into(),
    };
    assert_eq!(pin.sha256_for("x64"), verified);
    assert_eq!(
        pin.sha256_for("arm64"),
        ARM64_2_329_0,
        "an architecture the cache did not verify falls back"
    );
}

#[test]
fn another_version_without_a_verified_checksum_gets_none() {
    for version in ["2.328.0", "2.330.0", LATEST, ""] {
        let pin = unverified(version);
        for arch in ARCHS {
            assert_eq!(pin.sha256_for(arch), "", "{version} {arch}");
        }
    }
}

#[tokio::test]
async fn a_fresh_deployment_sends_the_default_version_with_its_checksums() {
    let ledger = Arc::new(MemoryLedger::default());
    let latest = LedgerRunnerPin::new(LATEST, DEFAULT_RUNNER_VERSION, ledger.clone());
    let pin = latest.runner_pin().await;
    assert_eq!(pin.version, DEFAULT_RUNNER_VERSION);
    assert_eq!(pin.sha256_for("x64"), X64_2_329_0);
    assert_eq!(pin.sha256_for("arm64"), ARM64_2_329_0);

    let pinned_default = LedgerRunnerPin::new(
        DEFAULT_RUNNER_VERSION,
        DEFAULT_RUNNER_VERSION,
        ledger.clone(),
    );
    assert_eq!(
        pinned_default.runner_pin().await.sha256_for("arm64"),
        ARM64_2_329_0
    );

    let pinned_other = LedgerRunnerPin::new("2.328.0", DEFAULT_RUNNER_VERSION, ledger);
    assert_eq!(
        pinned_other.runner_pin().await.sha256_for("x64"),
        "",
        "a pinned version nobody verified: bootstrap.sh refuses it"
    );
}

#[test]
fn the_table_names_the_default_version_for_every_arch() {
    for arch in ARCHS {
        let entries: Vec<_> = DEFAULT_RUNNER_SHA256
            .iter()
            .filter(|(_, a, _)| *a == arch)
            .collect();
        assert_eq!(entries.len(), 1, "one checksum for {arch}");
        let (version, _, sha) = entries[0];
        assert_eq!(
            *version, DEFAULT_RUNNER_VERSION,
            "DEFAULT_RUNNER_VERSION changed: copy the new release's published {arch} SHA-256 into DEFAULT_RUNNER_SHA256"
        );
        assert!(
            sha.len() == 64 && sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{arch}: {sha} is not 64 lower-case hex digits (what bootstrap.sh and the SSM document accept)"
        );
        assert_eq!(
            default_runner_sha256(DEFAULT_RUNNER_VERSION, arch),
            Some(*sha)
        );
    }
    assert_eq!(DEFAULT_RUNNER_SHA256.len(), ARCHS.len(), "no stale entries");
}
