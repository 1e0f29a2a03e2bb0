//! `SsmRunnerParameters` and `SsmCommands` against moto, and `SsmCommands`'
//! error mapping against mocked SSM answers.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::retry::RetryConfig;
use aws_sdk_ssm::error::ErrorMetadata;
use aws_sdk_ssm::operation::send_command::SendCommandError;
use aws_sdk_ssm::types::error::InvalidInstanceId;
use aws_sdk_ssm::types::{DocumentFormat, DocumentType, ResourceTypeForTagging};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use spotrunner_aws::ssm_runner::{SsmCommands, SsmRunnerParameters};
use spotrunner_core::config::Architecture;
use spotrunner_core::ports::{
    BootstrapCommand, Commands, PortError, RunnerParameters, SendOutcome,
};
use spotrunner_testkit::moto;
use std::collections::HashMap;

const JIT: &str = "eyJqaXQiOiJzZWNyZXQtdmFsdWUtdGhhdC1tdXN0LW5ldmVyLWxlYWsifQ==";

async fn tags_of(ssm: &Client, name: &str) -> HashMap<String, String> {
    ssm.list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .expect("list tags")
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect()
}

async fn value_of(ssm: &Client, name: &str) -> (String, String) {
    let p = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .expect("get parameter")
        .parameter
        .expect("parameter");
    (
        p.value.expect("value"),
        p.r#type.expect("type").as_str().to_string(),
    )
}

#[tokio::test]
async fn parameters_use_the_configured_kms_key() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = Client::new(&sdk);
    let key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555";
    // (type, KMS key) of a parameter as DescribeParameters reports it.
    let described = |name: &'static str| {
        let ssm = ssm.clone();
        async move {
            let out = ssm
                .describe_parameters()
                .parameter_filters(
                    aws_sdk_ssm::types::ParameterStringFilter::builder()
                        .key("Name")
                        .values(name)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            let p = &out.parameters()[0];
            (
                p.r#type().map(|t| t.as_str().to_string()),
                p.key_id().map(str::to_string),
            )
        }
    };
    let name = "/sr/jit/sr_cpu-1-0";
    SsmRunnerParameters::new(&sdk)
        .with_kms_key(key)
        .put(name, JIT, &[])
        .await
        .unwrap();
    let (kind, key_id) = described(name).await;
    assert_eq!(kind.as_deref(), Some("SecureString"));
    assert_eq!(
        key_id.as_deref(),
        Some(key),
        "the JIT parameter is under our key"
    );
    // Without a key: SSM's default (aws/ssm).
    let other = "/sr/jit/sr_cpu-2-0";
    SsmRunnerParameters::new(&sdk)
        .put(other, JIT, &[])
        .await
        .unwrap();
    assert_ne!(described(other).await.1.as_deref(), Some(key));
}

#[tokio::test]
async fn parameters_put_exists_tag_delete_list() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = Client::new(&sdk);
    let params = SsmRunnerParameters::new(&sdk)
        .with_instance_arn_prefix("arn:aws:ec2:us-east-1:123456789012:instance/");
    let name = "/sr/runners/sr_ubuntu-1";
    let tags = vec![
        ("spotrunner:deployment".to_string(), "sr".to_string()),
        (
            "spotrunner:runner-name".to_string(),
            "sr_ubuntu-1".to_string(),
        ),
    ];

    assert!(!params.exists(name).await.unwrap());
    params.put(name, "first", &tags).await.unwrap();
    assert!(params.exists(name).await.unwrap());
    assert_eq!(
        value_of(&ssm, name).await,
        ("first".to_string(), "SecureString".to_string())
    );
    // A retry overwrites (tags cannot go with Overwrite; the adapter tags after).
    params.put(name, JIT, &tags).await.unwrap();
    assert_eq!(value_of(&ssm, name).await.0, JIT);
    let t = tags_of(&ssm, name).await;
    assert_eq!(
        t.get("spotrunner:deployment").map(String::as_str),
        Some("sr")
    );
    assert_eq!(
        t.get("spotrunner:runner-name").map(String::as_str),
        Some("sr_ubuntu-1")
    );

    // Bound to its instance: the tag the runner role's IAM condition compares
    // with the caller's ec2:SourceInstanceARN.
    params
        .bind_to_instance(name, "i-0123456789abcdef0")
        .await
        .unwrap();
    let t = tags_of(&ssm, name).await;
    assert_eq!(
        t.get("spotrunner:instance-arn").map(String::as_str),
        Some("arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0")
    );
    assert_eq!(t.len(), 3);

    let err = params
        .bind_to_instance("/sr/runners/missing", "i-1")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    // Without an ARN prefix the adapter refuses to bind rather than write a tag
    // no IAM condition can match.
    let err = SsmRunnerParameters::new(&sdk)
        .bind_to_instance(name, "i-1")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("SPOTRUNNER_INSTANCE_ARN_PREFIX"),
        "{err}"
    );

    // list: everything under the prefix, every page, nothing outside it.
    let mut expected = vec![name.to_string()];
    for n in 0..54 {
        let other = format!("/sr/runners/sr-ubuntu-x{n:02}");
        params.put(&other, "v", &[]).await.unwrap();
        expected.push(other);
    }
    params.put("/sr/config", "v", &[]).await.unwrap();
    params.put("/other/runners/x", "v", &[]).await.unwrap();
    let mut listed = params.list("/sr/runners/").await.unwrap();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);

    params.delete(name).await.unwrap();
    assert!(!params.exists(name).await.unwrap());
    params.delete(name).await.unwrap();
    assert!(
        !params
            .list("/sr/runners/")
            .await
            .unwrap()
            .contains(&name.to_string())
    );
}

#[tokio::test]
async fn bootstrap_command_sends_names_not_the_jit_value() {
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
    let params = SsmRunnerParameters::new(&sdk);
    params
        .put("/sr/runners/sr_ubuntu-1", JIT, &[])
        .await
        .unwrap();

    let commands = SsmCommands::new(
        &sdk,
        "sr-bootstrap",
        "sr-artifacts",
        "bootstrap/bootstrap.sh",
        "2.317.0",
        Some("eu-west-1".into()),
    );
    // moto does not check instance ids against EC2; any well-formed id will do.
    let instance_id = "i-0abc1234def567890";
    let cmd = BootstrapCommand {
        instance_id: instance_id.into(),
        runner_name: "sr_ubuntu-1".into(),
        jit_parameter: "/sr/runners/sr_ubuntu-1".into(),
        max_run_time_secs: 7200,
        startup_script_key: None,
        // A Graviton pool's runner.
        runner_arch: Architecture::Arm64,
        // A pool that runs jobs as root, by choice.
        runner_user: "root".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    };
    let SendOutcome::Sent { command_id } = commands.send_bootstrap(&cmd).await.unwrap() else {
        panic!("expected Sent");
    };
    assert!(!command_id.is_empty());

    let listed = ssm
        .list_commands()
        .command_id(&command_id)
        .send()
        .await
        .expect("list commands");
    let c = &listed.commands()[0];
    assert_eq!(c.document_name(), Some("sr-bootstrap"));
    assert_eq!(c.instance_ids(), [instance_id]);
    let got: HashMap<String, Vec<String>> = c.parameters().cloned().unwrap_or_default();
    let expected: HashMap<String, Vec<String>> = [
        ("runnerName", "sr_ubuntu-1"),
        ("jitParameter", "/sr/runners/sr_ubuntu-1"),
        ("bucket", "sr-artifacts"),
        ("scriptKey", "bootstrap/bootstrap.sh"),
        ("runnerVersion", "2.317.0"),
        ("maxRunTimeSecs", "7200"),
        ("startupScriptKey", ""),
        ("region", "eu-west-1"),
        ("runnerArch", "arm64"),
        // 2.317.0 is not the default version: no checksum known here (the
        // VM checks the runner cache's sidecar, or refuses the runner).
        ("runnerSha256", ""),
        ("runnerUser", "root"),
        ("allowUnverifiedRunner", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
    .collect();
    assert_eq!(got, expected);
    let everything = format!("{c:?}");
    assert!(!everything.contains(JIT), "the JIT value never leaves SSM");

    // A retried bootstrap step finds this command again, for this runner only.
    assert_eq!(
        commands
            .find_bootstrap(instance_id, "sr_ubuntu-1")
            .await
            .unwrap(),
        Some(command_id.clone())
    );
    assert_eq!(
        commands
            .find_bootstrap(instance_id, "sr_ubuntu-2")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        commands
            .find_bootstrap("i-0fffffffffffffff0", "sr_ubuntu-1")
            .await
            .unwrap(),
        None
    );

    // A step that comes to send after its window sends nothing: another step
    // may be sending by then.
    let late = BootstrapCommand {
        runner_name: "sr_ubuntu-3".into(),
        send_by: chrono::Utc::now() - chrono::Duration::seconds(1),
        ..cmd.clone()
    };
    assert_eq!(
        commands.send_bootstrap(&late).await.unwrap(),
        SendOutcome::TooLate
    );
    assert_eq!(
        commands
            .find_bootstrap(instance_id, "sr_ubuntu-3")
            .await
            .unwrap(),
        None,
        "nothing reached SSM"
    );

    // Every parameter we send is declared by the document and fits its pattern's shape.
    for name in got.keys() {
        assert!(
            document.contains(&format!("\n  {name}:\n")),
            "{name} is not a parameter of the document"
        );
    }
}

fn mocked_commands(rule: &aws_smithy_mocks::Rule) -> SsmCommands {
    let client: Client = mock_client!(aws_sdk_ssm, RuleMode::Sequential, [rule], |c| c
        .retry_config(RetryConfig::disabled()));
    SsmCommands::from_client(client, "doc", "bucket", "key", "2.317.0", None)
}

fn cmd() -> BootstrapCommand {
    BootstrapCommand {
        instance_id: "i-0abc1234def567890".into(),
        runner_name: "sr_ubuntu-1".into(),
        jit_parameter: "/sr/runners/sr_ubuntu-1".into(),
        max_run_time_secs: 3600,
        startup_script_key: Some("startup/ubuntu.sh".into()),
        runner_arch: Architecture::X64,
        runner_user: "runner".into(),
        allow_unverified_runner: false,
        send_by: chrono::Utc::now() + chrono::Duration::hours(1),
    }
}

#[tokio::test]
async fn unregistered_instance_is_not_ready() {
    let rule = mock!(Client::send_command)
        .match_requests(|r| {
            r.instance_ids() == ["i-0abc1234def567890"]
                && r.parameters()
                    .and_then(|p| p.get("startupScriptKey"))
                    .map(|v| v.as_slice())
                    == Some(&["startup/ubuntu.sh".to_string()][..])
        })
        .then_error(|| {
            SendCommandError::InvalidInstanceId(
                InvalidInstanceId::builder()
                    .message("Instances [[i-0abc1234def567890]] not in a valid state")
                    .build(),
            )
        });
    let commands = mocked_commands(&rule);
    assert_eq!(
        commands.send_bootstrap(&cmd()).await.unwrap(),
        SendOutcome::NotReady
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn throttling_is_throttled() {
    let rule = mock!(Client::send_command).then_error(|| {
        SendCommandError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    });
    let commands = mocked_commands(&rule);
    let err = commands.send_bootstrap(&cmd()).await.unwrap_err();
    assert!(
        matches!(err, PortError::Throttled { service: "ssm", .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_parameters_are_rejected() {
    let rule = mock!(Client::send_command).then_error(|| {
        SendCommandError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameters")
                .message("Parameter runnerName failed validation")
                .build(),
        )
    });
    let commands = mocked_commands(&rule);
    let err = commands.send_bootstrap(&cmd()).await.unwrap_err();
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    assert!(!err.is_transient());
}

/// SendCommand is not idempotent: an error the SDK would retry (a 500 after
/// SSM may have accepted the command) is answered as is, never resent by the
/// SDK; the bootstrap step looks the command up before it sends again.
#[tokio::test]
async fn send_command_is_never_retried_by_the_sdk() {
    let rule = mock!(Client::send_command)
        .sequence()
        .http_status(500, None)
        .output(|| {
            aws_sdk_ssm::operation::send_command::SendCommandOutput::builder()
                .command(
                    aws_sdk_ssm::types::Command::builder()
                        .command_id("c-second")
                        .build(),
                )
                .build()
        })
        .build();
    let client: Client = mock_client!(aws_sdk_ssm, RuleMode::Sequential, [&rule], |c| c
        .retry_config(RetryConfig::standard().with_max_attempts(3)));
    let commands = SsmCommands::from_client(client, "doc", "bucket", "key", "2.317.0", None);
    let err = commands.send_bootstrap(&cmd()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(rule.num_calls(), 1, "one SendCommand, no SDK retry");
}
