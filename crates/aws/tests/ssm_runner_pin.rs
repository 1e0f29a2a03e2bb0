//! The bootstrap command carries the runner the runner cache verified: with
//! `runner_version = "latest"`, `SsmCommands::with_runner_pin` over
//! `LedgerRunnerPin` (the `runner-release` state document in DynamoDB on
//! moto) sends that version and its SHA-256 (`runnerSha256`), a parameter
//! the document declares; before any sync, the default version and an
//! empty checksum.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{DocumentFormat, DocumentType};
use spotrunner_aws::dynamodb::{DynamoLedger, create_table};
use spotrunner_aws::ssm_runner::SsmCommands;
use spotrunner_core::ports::{BootstrapCommand, Commands, Ledger, SendOutcome};
use spotrunner_core::runner_cache::{
    DEFAULT_RUNNER_VERSION, LATEST, LedgerRunnerPin, RunnerReleaseState, STATE_KEY,
};
use spotrunner_testkit::moto;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

async fn sent_parameters(
    ssm: &Client,
    commands: &SsmCommands,
    runner: &str,
) -> HashMap<String, String> {
    let cmd = BootstrapCommand {
        instance_id: "i-0abc1234def567890".into(),
        runner_name: runner.into(),
        jit_parameter: format!("/sr/runners/{runner}"),
        max_run_time_secs: 3600,
        startup_script_key: None,
        runner_arch: spotrunner_core::config::Architecture::X64,
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
    assert_eq!(before["runnerSha256"], "");

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
