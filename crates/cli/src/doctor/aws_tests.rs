//! The doctor's AWS checks against moto over HTTP through the real SDK: a deployment built as
//! Terraform would, then one misconfiguration at a time.

use super::*;
use crate::doctor::report::Status;
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
};
use aws_sdk_ssm::types::ParameterType;
use spotrunner_testkit::moto;
use std::collections::BTreeMap;

const PREFIX: &str = "doctor";
const CONFIG: &str = "/doctor/config";
const PRIVATE_KEY: &str = "/doctor/github/app-private-key";
const WEBHOOK_SECRET: &str = "/doctor/webhook/secret";
const PROFILE: &str = "doctor-runner";
/// Values of the secrets: never in any check's detail or fix.
const SECRET_VALUES: [&str; 2] = ["pem-bytes-never-shown", "hook-secret-never-shown"];

/// A deployment on moto: what `terraform apply` builds.
struct Deployed {
    _moto: moto::SharedMoto,
    sdk: SdkConfig,
    /// The configuration document (Terraform's fixture with moto's names).
    doc: serde_json::Value,
    /// The CLI's environment (Terraform's `cli_environment`).
    env: BTreeMap<String, String>,
    subnets: Vec<String>,
    image: String,
}

fn profile_arn() -> String {
    format!("arn:aws:iam::123456789012:instance-profile/{PROFILE}")
}

async fn deploy() -> Deployed {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let (ec2, iam, ssm, sqs) = (
        aws_sdk_ec2::Client::new(&sdk),
        aws_sdk_iam::Client::new(&sdk),
        aws_sdk_ssm::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    // The runner's role in its instance profile.
    iam.create_role()
        .role_name(PROFILE)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    iam.create_instance_profile()
        .instance_profile_name(PROFILE)
        .send()
        .await
        .unwrap();
    iam.add_role_to_instance_profile()
        .instance_profile_name(PROFILE)
        .role_name(PROFILE)
        .send()
        .await
        .unwrap();
    // A VPC with two subnets.
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc
        .and_then(|v| v.vpc_id)
        .unwrap();
    let mut subnets = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b"].iter().enumerate() {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.9.{i}.0/24"))
            .availability_zone(*az)
            .send()
            .await
            .unwrap()
            .subnet
            .and_then(|s| s.subnet_id)
            .unwrap();
        subnets.push(subnet);
    }
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    // One template a pool, as the module: the profile by ARN; `arm` by name.
    for pool in ["cpu", "od"] {
        let profile = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
            .arn(profile_arn())
            .build();
        template(&ec2, &format!("{PREFIX}-{pool}"), &image, Some(profile)).await;
    }
    let by_name = LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
        .name(PROFILE)
        .build();
    template(&ec2, &format!("{PREFIX}-arm"), &image, Some(by_name)).await;
    // The bootstrap document under the CLI's default name.
    ssm.create_document()
        .name(format!("{PREFIX}-runner"))
        .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .unwrap();
    let mut env = BTreeMap::new();
    for (var, queue) in [
        (JOBS_QUEUE_ENV, "jobs"),
        (BOOTSTRAP_QUEUE_ENV, "bootstrap"),
        (DLQ_ENV, "dlq"),
    ] {
        let url = sqs
            .create_queue()
            .queue_name(format!("{PREFIX}-{queue}"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        env.insert(var.to_string(), url);
    }
    let table = format!("{PREFIX}-ledger");
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .unwrap();
    env.insert(LEDGER_TABLE_ENV.to_string(), table);
    for (name, value) in [PRIVATE_KEY, WEBHOOK_SECRET].into_iter().zip(SECRET_VALUES) {
        put(&ssm, name, value, ParameterType::SecureString).await;
    }
    // Terraform's rendered document, on this account's names.
    let mut doc: serde_json::Value = serde_json::from_str(include_str!(
        "../../../../terraform/tests/fixtures/config.json"
    ))
    .unwrap();
    doc["deployment"] = PREFIX.into();
    doc["github"]["auth"]["private_key"] = format!("ssm:{PRIVATE_KEY}").into();
    doc["webhook"]["secrets"] = serde_json::json!([format!("ssm:{WEBHOOK_SECRET}")]);
    for pool in doc["pools"].as_array_mut().unwrap() {
        pool["launch_template"] = format!("{PREFIX}-{}", pool["name"].as_str().unwrap()).into();
    }
    doc["pools"][0]["subnets"] = serde_json::json!(subnets);
    doc["pools"][1]["subnets"] = serde_json::json!([subnets[0]]);
    doc["pools"][2]["subnets"] = serde_json::json!([subnets[1]]);
    Deployed {
        _moto: moto,
        sdk,
        doc,
        env,
        subnets,
        image,
    }
}

async fn template(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    image: &str,
    profile: Option<LaunchTemplateIamInstanceProfileSpecificationRequest>,
) {
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(image)
                .instance_type(InstanceType::M7iLarge)
                .set_iam_instance_profile(profile)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn put(ssm: &aws_sdk_ssm::Client, name: &str, value: &str, kind: ParameterType) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .overwrite(true)
        .send()
        .await
        .unwrap();
}

impl Deployed {
    fn ssm(&self) -> aws_sdk_ssm::Client {
        aws_sdk_ssm::Client::new(&self.sdk)
    }

    /// Deploy `doc` as the configuration parameter and run the AWS checks.
    async fn doctor(&self, doc: &serde_json::Value) -> Vec<Check> {
        put(&self.ssm(), CONFIG, &doc.to_string(), ParameterType::String).await;
        let (check, config) = load_config(&self.sdk, CONFIG).await;
        assert_eq!(check.status, Status::Pass, "{check:?}");
        let mut out = vec![check];
        out.extend(checks(&self.sdk, &config.unwrap(), &self.env).await);
        for c in &out {
            let text = format!("{} {}", c.detail, c.fix.as_deref().unwrap_or(""));
            for secret in SECRET_VALUES {
                assert!(!text.contains(secret), "a secret shown: {c:?}");
            }
        }
        out
    }
}

fn find<'a>(checks: &'a [Check], id: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no check {id} in {checks:#?}"))
}

/// Every check but `except` passed.
fn others_pass(checks: &[Check], except: &[&str]) {
    for c in checks.iter().filter(|c| !except.contains(&c.id.as_str())) {
        assert_eq!(c.status, Status::Pass, "{c:?}");
    }
}

fn fix(c: &Check) -> &str {
    c.fix.as_deref().unwrap_or_default()
}

#[tokio::test]
async fn a_correct_deployment_passes_every_check() {
    let d = deploy().await;
    let checks = d.doctor(&d.doc).await;
    let ids: Vec<&str> = checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "aws.config_parameter",
            "aws.environment",
            "aws.queue.jobs",
            "aws.queue.bootstrap",
            "aws.queue.dlq",
            "aws.ledger",
            "aws.ssm_document",
            "aws.launch_template.cpu",
            "aws.launch_template.od",
            "aws.launch_template.arm",
            "aws.subnet.cpu",
            "aws.subnet.od",
            "aws.subnet.arm",
            "aws.instance_profile",
            "aws.secret.github.auth.private_key",
            "aws.secret.webhook.secrets[0]",
        ]
    );
    others_pass(&checks, &[]);
    let cpu = find(&checks, "aws.subnet.cpu");
    for s in &d.subnets {
        assert!(cpu.detail.contains(s.as_str()), "{cpu:?}");
    }
    let profile = find(&checks, "aws.instance_profile");
    assert!(
        profile
            .detail
            .contains(&format!("instance profile {PROFILE} (role {PROFILE})")),
        "{profile:?}"
    );
    assert!(
        find(&checks, "aws.ssm_document")
            .detail
            .contains("doctor-runner"),
        "{checks:#?}"
    );
    assert!(
        find(&checks, "aws.secret.webhook.secrets[0]")
            .detail
            .contains("SecureString"),
        "{checks:#?}"
    );
}

#[tokio::test]
async fn a_missing_launch_template_is_named_with_its_pool() {
    let d = deploy().await;
    let mut doc = d.doc.clone();
    doc["pools"][1]["launch_template"] = "doctor-gone".into();
    let checks = d.doctor(&doc).await;
    let c = find(&checks, "aws.launch_template.od");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains("pool od"), "{c:?}");
    assert!(c.detail.contains("doctor-gone"), "{c:?}");
    assert!(c.detail.contains("not found"), "{c:?}");
    assert!(
        c.detail
            .contains("InvalidLaunchTemplateName.NotFoundException"),
        "the code AWS answered: {c:?}"
    );
    assert!(fix(c).contains("terraform apply"), "{c:?}");
    assert!(fix(c).contains("pools[1].launch_template"), "{c:?}");
    // The profile is read from the templates that exist.
    others_pass(&checks, &["aws.launch_template.od"]);
}

#[tokio::test]
async fn missing_subnets_are_each_named() {
    let d = deploy().await;
    let mut doc = d.doc.clone();
    doc["pools"][0]["subnets"] =
        serde_json::json!([d.subnets[0], "subnet-0000dead", "subnet-0000beef"]);
    let checks = d.doctor(&doc).await;
    let c = find(&checks, "aws.subnet.cpu");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("subnet-0000dead, subnet-0000beef"),
        "{c:?}"
    );
    assert!(!c.detail.contains(d.subnets[0].as_str()), "{c:?}");
    assert!(fix(c).contains("pools[0].subnets"), "{c:?}");
    others_pass(&checks, &["aws.subnet.cpu"]);
}

#[tokio::test]
async fn a_template_without_an_instance_profile_fails_the_profile_check() {
    let d = deploy().await;
    let ec2 = aws_sdk_ec2::Client::new(&d.sdk);
    template(&ec2, "doctor-bare", &d.image, None).await;
    let mut doc = d.doc.clone();
    doc["pools"][2]["launch_template"] = "doctor-bare".into();
    let checks = d.doctor(&doc).await;
    let c = find(&checks, "aws.instance_profile");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail
            .contains("launch template doctor-bare ($Default version) has no IAM instance profile"),
        "{c:?}"
    );
    assert!(c.detail.contains("SSM"), "{c:?}");
    assert!(!c.detail.contains("doctor-cpu"), "{c:?}");
    assert!(fix(c).contains("runner_instance_profile"), "{c:?}");
    others_pass(&checks, &["aws.instance_profile"]);
}

#[tokio::test]
async fn a_missing_profile_or_one_without_a_role_fails() {
    let d = deploy().await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&d.sdk),
        aws_sdk_iam::Client::new(&d.sdk),
    );
    let named = |n: &str| {
        Some(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .name(n)
                .build(),
        )
    };
    template(
        &ec2,
        "doctor-ghost",
        &d.image,
        named("doctor-ghost-profile"),
    )
    .await;
    iam.create_instance_profile()
        .instance_profile_name("doctor-empty")
        .send()
        .await
        .unwrap();
    template(&ec2, "doctor-empty", &d.image, named("doctor-empty")).await;
    let mut doc = d.doc.clone();
    doc["pools"][0]["launch_template"] = "doctor-ghost".into();
    doc["pools"][1]["launch_template"] = "doctor-empty".into();
    let checks = d.doctor(&doc).await;
    let c = find(&checks, "aws.instance_profile");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains(
            "instance profile doctor-ghost-profile (of launch template doctor-ghost): not found (AWS answered NoSuchEntity"
        ),
        "{c:?}"
    );
    assert!(
        c.detail.contains(
            "instance profile doctor-empty (of launch template doctor-empty) has no role"
        ),
        "{c:?}"
    );
    assert!(fix(c).contains("add-role-to-instance-profile"), "{c:?}");
    others_pass(&checks, &["aws.instance_profile"]);
}

#[tokio::test]
async fn a_missing_secret_fails_and_a_plain_string_one_warns() {
    let d = deploy().await;
    let ssm = d.ssm();
    ssm.delete_parameter()
        .name(WEBHOOK_SECRET)
        .send()
        .await
        .unwrap();
    ssm.delete_parameter()
        .name(PRIVATE_KEY)
        .send()
        .await
        .unwrap();
    put(&ssm, PRIVATE_KEY, SECRET_VALUES[0], ParameterType::String).await;
    let checks = d.doctor(&d.doc).await;
    let c = find(&checks, "aws.secret.webhook.secrets[0]");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains(WEBHOOK_SECRET), "{c:?}");
    assert!(c.detail.contains("ParameterNotFound"), "{c:?}");
    assert!(
        fix(c).contains("spotrunner github-app create --backend aws"),
        "{c:?}"
    );
    assert!(fix(c).contains("--type SecureString"), "{c:?}");
    let k = find(&checks, "aws.secret.github.auth.private_key");
    assert_eq!(k.status, Status::Warn, "{k:?}");
    assert!(k.detail.contains("a String parameter"), "{k:?}");
    assert!(fix(k).contains("SecureString"), "{k:?}");
    others_pass(
        &checks,
        &[
            "aws.secret.webhook.secrets[0]",
            "aws.secret.github.auth.private_key",
        ],
    );
}

#[tokio::test]
async fn a_missing_variable_fails_the_environment_and_its_resource_is_skipped() {
    let mut d = deploy().await;
    d.env.remove(LEDGER_TABLE_ENV);
    let checks = d.doctor(&d.doc).await;
    let c = find(&checks, "aws.environment");
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains(LEDGER_TABLE_ENV), "{c:?}");
    assert!(!c.detail.contains(JOBS_QUEUE_ENV), "{c:?}");
    assert_eq!(
        fix(c),
        "export them from Terraform: eval \"$(terraform output -raw cli_environment)\""
    );
    assert!(checks.iter().all(|c| c.id != "aws.ledger"), "{checks:#?}");
    others_pass(&checks, &["aws.environment"]);

    // Without the optional DLQ: a warning, and no DLQ check.
    d.env
        .insert(LEDGER_TABLE_ENV.into(), format!("{PREFIX}-ledger"));
    d.env.remove(DLQ_ENV);
    let checks = d.doctor(&d.doc).await;
    let c = find(&checks, "aws.environment");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains(DLQ_ENV), "{c:?}");
    assert!(
        checks.iter().all(|c| c.id != "aws.queue.dlq"),
        "{checks:#?}"
    );
    others_pass(&checks, &["aws.environment"]);
}

#[tokio::test]
async fn missing_queue_table_and_document_fail_each_with_its_output() {
    let mut d = deploy().await;
    let jobs = d.env[JOBS_QUEUE_ENV].clone();
    aws_sdk_sqs::Client::new(&d.sdk)
        .delete_queue()
        .queue_url(&jobs)
        .send()
        .await
        .unwrap();
    d.env.insert(LEDGER_TABLE_ENV.into(), "doctor-nope".into());
    d.env.insert(SSM_DOCUMENT_ENV.into(), "doctor-nodoc".into());
    let checks = d.doctor(&d.doc).await;
    let q = find(&checks, "aws.queue.jobs");
    assert_eq!(q.status, Status::Fail, "{q:?}");
    assert!(q.detail.contains(&jobs), "{q:?}");
    assert!(fix(q).contains("jobs_queue_url"), "{q:?}");
    let t = find(&checks, "aws.ledger");
    assert_eq!(t.status, Status::Fail, "{t:?}");
    assert!(
        t.detail
            .contains("doctor-nope: not found (AWS answered ResourceNotFoundException"),
        "{t:?}"
    );
    assert!(fix(t).contains("ledger_table"), "{t:?}");
    let s = find(&checks, "aws.ssm_document");
    assert_eq!(s.status, Status::Fail, "{s:?}");
    assert!(s.detail.contains("doctor-nodoc: not found"), "{s:?}");
    assert!(fix(s).contains("output ssm_document"), "{s:?}");
    others_pass(
        &checks,
        &["aws.queue.jobs", "aws.ledger", "aws.ssm_document"],
    );
}

#[tokio::test]
async fn a_non_empty_dead_letter_queue_warns() {
    let d = deploy().await;
    let sqs = aws_sdk_sqs::Client::new(&d.sdk);
    for i in 0..2 {
        sqs.send_message()
            .queue_url(&d.env[DLQ_ENV])
            .message_body(format!("{{\"version\":1,\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
    }
    let checks = d.doctor(&d.doc).await;
    let c = find(&checks, "aws.queue.dlq");
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.detail.contains("2 waiting"), "{c:?}");
    assert!(fix(c).contains("spotrunner redrive --backend aws"), "{c:?}");
    others_pass(&checks, &["aws.queue.dlq"]);
}

#[tokio::test]
async fn a_bad_or_missing_configuration_parameter_fails_naming_the_field() {
    let d = deploy().await;
    let ssm = d.ssm();
    let (c, config) = load_config(&d.sdk, "/doctor/none").await;
    assert!(config.is_none());
    assert_eq!(c.id, CONFIG_PARAMETER);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail
            .contains("/doctor/none: not found (AWS answered ParameterNotFound"),
        "{c:?}"
    );
    assert!(
        fix(&c).contains("terraform apply (output config_parameter names it)"),
        "{c:?}"
    );

    let mut doc = d.doc.clone();
    doc["pools"][1]["max_runners"] = "many".into();
    put(&ssm, CONFIG, &doc.to_string(), ParameterType::String).await;
    let (c, config) = load_config(&d.sdk, CONFIG).await;
    assert!(config.is_none());
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains("pools[1].max_runners"), "{c:?}");

    // Valid, but not for AWS: a literal secret, named by field, never shown.
    let mut doc = d.doc.clone();
    doc["webhook"]["secrets"] = serde_json::json!([format!("value:{}", SECRET_VALUES[1])]);
    put(&ssm, CONFIG, &doc.to_string(), ParameterType::SecureString).await;
    let (c, config) = load_config(&d.sdk, CONFIG).await;
    assert!(config.is_none());
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.detail.contains("webhook.secrets[0]: value: secrets"),
        "{c:?}"
    );
    assert!(!c.detail.contains(SECRET_VALUES[1]), "{c:?}");

    // A secret pasted where its reference belongs is not echoed.
    let mut doc = d.doc.clone();
    doc["github"]["auth"]["private_key"] = SECRET_VALUES[0].into();
    put(&ssm, CONFIG, &doc.to_string(), ParameterType::SecureString).await;
    let (c, _) = load_config(&d.sdk, CONFIG).await;
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.detail.contains("github.auth"), "{c:?}");
    assert!(!c.detail.contains(SECRET_VALUES[0]), "{c:?}");
}

fn refusal(code: &str) -> Refusal {
    use aws_sdk_ssm::error::ErrorMetadata;
    use aws_sdk_ssm::operation::get_parameter::GetParameterError;
    let e: SdkError<GetParameterError, ()> = SdkError::service_error(
        GetParameterError::generic(ErrorMetadata::builder().code(code).message("m").build()),
        (),
    );
    Refusal::of(&e)
}

#[test]
fn an_access_denial_names_the_iam_action() {
    for code in [
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AccessDenied",
    ] {
        let p = refusal(code).problem("SSM parameter /x", "ssm:GetParameter", "apply");
        assert!(p.detail.contains("access denied"), "{}", p.detail);
        assert!(p.detail.contains(code), "{}", p.detail);
        assert!(p.fix.contains("need ssm:GetParameter"), "{}", p.fix);
    }
    let p = refusal("ExpiredToken").problem("x", "a", "apply");
    assert!(p.fix.contains("refresh the AWS credentials"), "{}", p.fix);
    let p = refusal("ValidationException").problem("x", "a", "apply");
    assert_eq!(p.fix, "apply");
    assert!(p.detail.contains("ValidationException: m"), "{}", p.detail);
}

#[test]
fn quoted_text_is_redacted_escapes_and_all() {
    assert_eq!(
        strip_quoted(r#"invalid type: string "ab\"cd", expected x"#),
        r#"invalid type: string "<redacted>", expected x"#
    );
    assert_eq!(strip_quoted(r#"a "b"#), r#"a "<redacted>""#);
    assert_eq!(strip_quoted("no quotes"), "no quotes");
}
