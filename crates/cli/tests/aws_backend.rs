//! `serve --backend aws` against moto: the same process with the AWS adapters
//! (DynamoDB ledger, SQS queues, EC2 CreateFleet, SSM parameters and commands),
//! configured by the standard AWS environment including `AWS_ENDPOINT_URL`.
//! 30 jobs, each delivered twice, give exactly 30 instances.

mod common;

use aws_sdk_ec2::types::{Filter, InstanceType, RequestLaunchTemplateData};
use common::*;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use spotrunner_testkit::moto;
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_jobs_twice_give_exactly_thirty_instances() {
    let moto = moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let mut urls = Vec::new();
    for q in ["cli-jobs", "cli-bootstrap", "cli-dlq"] {
        let out = sqs.create_queue().queue_name(q).send().await.unwrap();
        urls.push(out.queue_url.unwrap());
    }
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await
        .unwrap();
    let subnet = ec2
        .create_subnet()
        .vpc_id(vpc.vpc.and_then(|v| v.vpc_id).unwrap())
        .cidr_block("10.0.1.0/24")
        .availability_zone("us-east-1a")
        .send()
        .await
        .unwrap()
        .subnet
        .and_then(|s| s.subnet_id)
        .unwrap();
    let image = ec2.describe_images().send().await.unwrap().images()[0]
        .image_id()
        .unwrap()
        .to_string();
    ec2.create_launch_template()
        .launch_template_name("cli-linux")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(&image)
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    create_runner_document(&ssm, "cli-runner").await;
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "cli-ledger")
        .await
        .unwrap();

    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    let mut doc = config(
        &github,
        serde_json::json!([{
            "name": "linux", "labels": ["linux"], "max_runners": 40,
            "launch_template": "cli-linux", "instance_types": ["t3.micro"],
            "subnets": [subnet],
        }]),
        serde_json::json!({}),
    );
    // A configuration for AWS takes references, never literal secrets: the
    // `value:` ones of the local tests are refused, each field named.
    write_json(&path, &doc);
    let refused = Serve::start_with(&path, &state, &[("--backend", "aws")])
        .err()
        .expect("value: secrets are refused on AWS");
    assert!(
        refused.contains("github.auth.token: value: secrets"),
        "{refused}"
    );
    assert!(
        refused.contains("webhook.secrets[0]: value: secrets"),
        "{refused}"
    );
    assert!(
        !refused.contains(TOKEN) && !refused.contains(SECRET),
        "{refused}"
    );
    doc["github"]["auth"]["token"] = "env:CLI_TEST_GITHUB_TOKEN".into();
    doc["webhook"]["secrets"] = serde_json::json!(["env:CLI_TEST_WEBHOOK_SECRET"]);
    // On AWS an empty owner list is refused: any owner, said on purpose.
    doc["allowed_owners"] = serde_json::json!(["*"]);
    write_json(&path, &doc);
    let env = [
        ("--backend", "aws"),
        ("AWS_ENDPOINT_URL", moto.url()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("SPOTRUNNER_JOBS_QUEUE_URL", urls[0].as_str()),
        ("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", urls[1].as_str()),
        ("SPOTRUNNER_DLQ_URL", urls[2].as_str()),
        ("SPOTRUNNER_LEDGER_TABLE", "cli-ledger"),
        ("SPOTRUNNER_SSM_DOCUMENT", "cli-runner"),
        ("SPOTRUNNER_BUCKET", "cli-bucket"),
        (
            "SPOTRUNNER_INSTANCE_ARN_PREFIX",
            "arn:aws:ec2:us-east-1:123456789012:instance/",
        ),
        ("CLI_TEST_GITHUB_TOKEN", TOKEN),
        ("CLI_TEST_WEBHOOK_SECRET", SECRET),
    ];
    let serve = Serve::start_with(&path, &state, &env).unwrap_or_else(|e| panic!("{e}"));
    let client = reqwest::Client::new();
    let ids: Vec<u64> = (1..=30).map(|i| 50_000 + i).collect();
    for round in 0..2 {
        for id in &ids {
            let (body, sig) = job_payload("queued", *id, &["self-hosted", "linux"], None);
            let code = post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await;
            assert_eq!(code, Some(202), "job {id}, delivery {round}");
        }
    }

    let instances = || async {
        let out = ec2
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag:spotrunner:deployment")
                    .values("e2e")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect::<Vec<_>>()
    };
    wait_until_async(
        "30 jobs launched and bootstrapped",
        Duration::from_secs(180),
        || async {
            let s = cli_status_aws(&path, &state, &env);
            let states = job_states(&s);
            let bootstrapped = s["pools"]["linux"]["runners_by_state"]["bootstrapped"].as_u64();
            states.len() == 30
                && states.values().all(|v| v == "launched")
                && bootstrapped == Some(30)
        },
    )
    .await;
    let all = instances().await;
    let jobs: BTreeSet<String> = all
        .iter()
        .filter_map(|i| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some("spotrunner:job-id"))
                .and_then(|t| t.value().map(str::to_string))
        })
        .collect();
    assert_eq!(all.len(), 30, "exactly one instance per job");
    assert_eq!(jobs.len(), 30);
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), 30);
    drop(serve);
}

/// `spotrunner status --json --backend aws` with the same environment.
fn cli_status_aws(
    config: &std::path::Path,
    state: &std::path::Path,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = std::process::Command::new(BIN)
        .args(["status", "--json", "--backend", "aws", "--config"])
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .envs(env.iter().filter(|(k, _)| !k.starts_with("--")).copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "status --backend aws: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
