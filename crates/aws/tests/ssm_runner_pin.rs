//! The bootstrap command carries the runner the runner cache verified: with
//! `runner_version = "latest"`, `SsmCommands::with_runner_pin` over
//! `LedgerRunnerPin` (the `runner-release` state document in DynamoDB on
//! moto) sends that version and its SHA-256 (`runnerSha256`), a parameter
//! the document declares; before any sync, the default version and the
//! checksum GitHub published for it (compiled in). A version nobody verified
//! gets an empty checksum (bootstrap.sh then refuses to install it).

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{DocumentFormat, DocumentType};
use spotrunner_aws::dynamodb::{DynamoLedger, create_table};
use spotrunner_aws::ssm_runner::SsmCommands;
use spotrunner_core::config::Architecture;
use spotrunner_core::ports::{BootstrapCommand, Commands, Ledger, SendOutcome};
use spotrunner_core::runner_cache::{
    DEFAULT_RUNNER_VERSION, LATEST, LedgerRunnerPin, RunnerReleaseState, STATE_KEY,
};
use spotrunner_testkit::moto;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// GitHub's published SHA-256s of the default version's tarballs (actions/runner
/// v2.329.0 release notes).
const X64_2_329_0: &str = "194f1e1e4bd02f80b7e9633fc546084d8d4e19f3928a324d512ea53430102e1d";
const ARM64_2_329_0: &str = "56768348b3d643a6a29d4ad71e9bdae0dc0ef1eb01afe0f7a8ee097b039bfaaf";

async fn sent_parameters(
    ssm: &Client,
    commands: &SsmCommands,
    runner: &str,
) -> HashMap<String, String> {
    sent_parameters_for(ssm, commands, runner, Architecture::X64).await
}

async fn sent_parameters_for(
    ssm: &Client,
    commands: &SsmCommands,
    runner: &str,
    arch: Architecture,
) -> HashMap<String, String> {
    let cmd = BootstrapCommand {
        instance_id: "i-0abc1234def567890".into(),
        runner_name: runner.into(),
        jit_parameter: format!("/sr/runners/{runner}"),
        max_run_time_secs: 3600,
        startup_script_key: None,
        runner_arch: arch,
        runner_user: "runner".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let SendOutcome::Sent { command_id } = commands.send_bootstrap(&cmd).await.unwrap() else {
        panic!("expected Sent");
    };
    let listed = ssm
        .list_commands()
        .command_id(&command_id)
        .send()
        .await
        .expect("list commands");
    listed.commands()[0]
        .parameters()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.join(",")))
        .collect()
}

#[tokio::test]
async fn latest_sends_the_verified_version_and_its_checksum() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = Client::new(&sdk);
    let document = include_str!("../../../scripts/runner/ssm-document.yaml");
    ssm.create_document()
        .name("sr-bootstrap")
        .content(document)
        .document_format(DocumentFormat::Yaml)
        .document_type(DocumentType::Command)
        .send()
        .await
        .expect("create document");
    create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger")
        .await
        .expect("ledger table");
    let ledger = Arc::new(DynamoLedger::new(&sdk, "sr-ledger"));
    let pin = LedgerRunnerPin::new(LATEST, DEFAULT_RUNNER_VERSION, ledger.clone())
        .with_ttl(Duration::ZERO);
    let commands = SsmCommands::new(
        &sdk,
        "sr-bootstrap",
        "sr-artifacts",
        "bootstrap.sh",
        LATEST,
        None,
    )
    .with_runner_pin(Arc::new(pin));

    let before = sent_parameters(&ssm, &commands, "sr_ubuntu-1").await;
    assert_eq!(before["runnerVersion"], DEFAULT_RUNNER_VERSION);
    assert_eq!(
        before["runnerSha256"], X64_2_329_0,
        "before any sync: the default version's compiled-in checksum"
    );

    let x64 = "3f".repeat(32);
    let state = RunnerReleaseState {
        version: "2.330.0".into(),
        sha256: [
            ("x64".to_string(), x64.clone()),
            ("arm64".to_string(), "4e".repeat(32)),
        ]
        .into(),
        ..Default::default()
    };
    ledger
        .update_state_doc(STATE_KEY, &|d: &mut Option<serde_json::Value>| {
            *d = serde_json::to_value(&state).ok();
            true
        })
        .await
        .unwrap();
    let after = sent_parameters(&ssm, &commands, "sr_ubuntu-2").await;
    assert_eq!(after["runnerVersion"], "2.330.0");
    assert_eq!(
        after["runnerSha256"], x64,
        "the x64 checksum (no runnerArch sent)"
    );
    for name in after.keys() {
        assert!(
            document.contains(&format!("\n  {name}:\n")),
            "{name} is not a parameter of the document"
        );
    }
}

/// The guard is returned: moto is this test's only while it is held.
async fn moto_ssm_and_ledger() -> (
    moto::SharedMoto,
    aws_types::SdkConfig,
    Client,
    Arc<DynamoLedger>,
) {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = Client::new(&sdk);
    let document = include_str!("../../../scripts/runner/ssm-document.yaml");
    // The document may exist already (the tests share one moto).
    let _ = ssm
        .create_document()
        .name("sr-bootstrap")
        .content(document)
        .document_format(DocumentFormat::Yaml)
        .document_type(DocumentType::Command)
        .send()
        .await;
    let _ = create_table(&aws_sdk_dynamodb::Client::new(&sdk), "sr-ledger-fresh").await;
    let ledger = Arc::new(DynamoLedger::new(&sdk, "sr-ledger-fresh"));
    (moto, sdk, ssm, ledger)
}

fn commands(sdk: &aws_types::SdkConfig, runner_version: &str) -> SsmCommands {
    SsmCommands::new(
        sdk,
        "sr-bootstrap",
        "sr-artifacts",
        "bootstrap.sh",
        runner_version,
        None,
    )
}

#[tokio::test]
async fn a_fresh_deployment_sends_the_default_versions_published_checksum_per_arch() {
    let (_moto, sdk, ssm, ledger) = moto_ssm_and_ledger().await;
    for configured in [LATEST, DEFAULT_RUNNER_VERSION] {
        let pin = LedgerRunnerPin::new(configured, DEFAULT_RUNNER_VERSION, ledger.clone())
            .with_ttl(Duration::ZERO);
        let with_pin = commands(&sdk, configured).with_runner_pin(Arc::new(pin));
        let x64 = sent_parameters_for(&ssm, &with_pin, "sr_fresh-1", Architecture::X64).await;
        assert_eq!(x64["runnerVersion"], DEFAULT_RUNNER_VERSION, "{configured}");
        assert_eq!(x64["runnerSha256"], X64_2_329_0, "{configured} x64");
        let arm = sent_parameters_for(&ssm, &with_pin, "sr_fresh-2", Architecture::Arm64).await;
        assert_eq!(arm["runnerArch"], "arm64");
        assert_eq!(arm["runnerSha256"], ARM64_2_329_0, "{configured} arm64");
    }
    // Without a pin source (runner_version sent as configured): the same.
    let plain = commands(&sdk, DEFAULT_RUNNER_VERSION);
    let x64 = sent_parameters_for(&ssm, &plain, "sr_fresh-3", Architecture::X64).await;
    assert_eq!(x64["runnerVersion"], DEFAULT_RUNNER_VERSION);
    assert_eq!(x64["runnerSha256"], X64_2_329_0, "no pin source, x64");
    let arm = sent_parameters_for(&ssm, &plain, "sr_fresh-4", Architecture::Arm64).await;
    assert_eq!(arm["runnerSha256"], ARM64_2_329_0, "no pin source, arm64");
}

#[tokio::test]
async fn a_pinned_version_nobody_verified_carries_no_checksum() {
    let (_moto, sdk, ssm, ledger) = moto_ssm_and_ledger().await;
    let pin =
        LedgerRunnerPin::new("2.328.0", DEFAULT_RUNNER_VERSION, ledger).with_ttl(Duration::ZERO);
    let with_pin = commands(&sdk, "2.328.0").with_runner_pin(Arc::new(pin));
    let plain = commands(&sdk, "2.328.0");
    for (n, commands) in [with_pin, plain].iter().enumerate() {
        for arch in [Architecture::X64, Architecture::Arm64] {
            let sent = sent_parameters_for(&ssm, commands, &format!("sr_pinned-{n}"), arch).await;
            assert_eq!(sent["runnerVersion"], "2.328.0");
            assert_eq!(
                sent.get("runnerSha256")
                    .map(String::as_str)
                    .unwrap_or_default(),
                "",
                "bootstrap.sh refuses it unless the pool allows unverified runners ({arch:?})"
            );
        }
    }
}
