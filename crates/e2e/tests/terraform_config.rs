//! The configuration document the Terraform module renders is one the Lambdas
//! accept: parsed and validated by the same code they run at cold start
//! (`Config::from_json`, `deny_unknown_fields`, then `validate_for_aws`).
//!
//! - `terraform/tests/fixtures/config.json` is asserted (by `terraform test`,
//!   `terraform/tests/module.tftest.hcl`) to be exactly what the module renders
//!   for the test's variables; here it must load.
//! - After `scripts/terraform-check.sh` applied `terraform/examples/local` to moto,
//!   `SPOTRUNNER_TF_OUTPUTS` names its `terraform output -json`: the deployed
//!   document (read back from the SSM parameter on `MOTO_ENDPOINT` when set, as
//!   `spotrunner_aws::runtime::load_config` does) must load too, and the Lambda
//!   environments must name the deployed resources.

use serde_json::Value;
use spotrunner_core::Config;
use spotrunner_core::config::{Architecture, CapacityType, GitHubAuth, SecretRef};
use std::path::PathBuf;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(text: &str, what: &str) -> Config {
    let config = Config::from_json(text).unwrap_or_else(|e| panic!("{what}: {e}"));
    config
        .validate_for_aws()
        .unwrap_or_else(|e| panic!("{what} (AWS rules): {e}"));
    config
}

#[test]
fn module_rendering_fixture_loads_with_the_lambdas_parser() {
    let path = repo_root().join("terraform/tests/fixtures/config.json");
    let text = std::fs::read_to_string(&path).expect("terraform/tests/fixtures/config.json");
    let config = load(&text, "terraform/tests/fixtures/config.json");

    assert_eq!(config.deployment, "srtest");
    assert_eq!(
        config.github.auth,
        GitHubAuth::App {
            app_id: 4242.into(),
            private_key: SecretRef::Ssm("/srtest/github/app-private-key".into()),
        }
    );
    assert_eq!(
        config.webhook.secrets,
        vec![SecretRef::Ssm("/srtest/webhook/secret".into())]
    );
    assert_eq!(config.max_total_weight, Some(10));
    let names: Vec<_> = config.pools.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cpu", "od", "arm"]);
    let cpu = config.pool("cpu").unwrap();
    assert_eq!(cpu.launch_template.as_deref(), Some("srtest-cpu"));
    assert!(cpu.on_demand_fallback);
    assert_eq!(cpu.startup_script.as_deref(), Some("dnf install -y jq"));
    let od = config.pool("od").unwrap();
    assert_eq!(od.capacity_type, CapacityType::OnDemand);
    assert_eq!(od.startup_script, None, "null startup_script is None");
    // Terraform's architecture (arch.tf) is the one the Lambdas derive.
    for pool in &config.pools {
        let derived = Architecture::of_instance_type(&pool.instance_types[0]);
        assert_eq!(pool.architecture, Some(derived), "{}", pool.name);
    }
    assert_eq!(config.pool("arm").unwrap().arch(), Architecture::Arm64);
    assert_eq!(cpu.arch(), Architecture::X64);
}

#[test]
fn a_field_the_schema_does_not_know_is_refused() {
    // The guard the fixture test relies on: an extra or misspelt field in what
    // Terraform renders must fail, naming the field.
    let path = repo_root().join("terraform/tests/fixtures/config.json");
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).expect("fixture is JSON");
    doc["pools"][0]["max_runner"] = Value::from(3);
    let err = Config::from_json(&doc.to_string()).expect_err("unknown field accepted");
    assert!(err.to_string().contains("pools[0]"), "{err}");
}

fn output<'a>(outputs: &'a Value, name: &str) -> &'a Value {
    outputs
        .get(name)
        .and_then(|o| o.get("value"))
        .unwrap_or_else(|| panic!("terraform output {name} missing"))
}

#[tokio::test]
async fn deployed_local_example_configuration_loads() {
    let Ok(path) = std::env::var("SPOTRUNNER_TF_OUTPUTS") else {
        eprintln!(
            "SKIP deployed_local_example_configuration_loads: SPOTRUNNER_TF_OUTPUTS is not set \
             (scripts/terraform-check.sh sets it after applying terraform/examples/local)"
        );
        return;
    };
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("SPOTRUNNER_TF_OUTPUTS={path}: {e}"));
    let outputs: Value = serde_json::from_str(&text).expect("terraform output -json");

    let rendered = output(&outputs, "config_json")
        .as_str()
        .expect("config_json is a string");
    let config = load(rendered, "output config_json");
    let parameter = output(&outputs, "config_parameter").as_str().unwrap();
    assert_eq!(parameter, format!("/{}/config", config.deployment));

    // What each Lambda is told: the contract in crates/functions/*/src/main.rs.
    let env = output(&outputs, "lambda_environment");
    let expect: &[(&str, &[&str])] = &[
        (
            "webhook",
            &[
                "SPOTRUNNER_JOBS_QUEUE_URL",
                "SPOTRUNNER_LEDGER_TABLE",
                "SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS",
            ],
        ),
        (
            "create-runner",
            &[
                "SPOTRUNNER_JOBS_QUEUE_URL",
                "SPOTRUNNER_BOOTSTRAP_QUEUE_URL",
                "SPOTRUNNER_LEDGER_TABLE",
                "SPOTRUNNER_SSM_DOCUMENT",
                "SPOTRUNNER_BUCKET",
                "SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY",
            ],
        ),
        (
            "stop-runner",
            &[
                "SPOTRUNNER_LEDGER_TABLE",
                "SPOTRUNNER_SSM_DOCUMENT",
                "SPOTRUNNER_JOBS_QUEUE_URL",
            ],
        ),
        (
            "dlq-mover",
            &[
                "SPOTRUNNER_DLQ_URL",
                "SPOTRUNNER_JOBS_QUEUE_URL",
                "SPOTRUNNER_LEDGER_TABLE",
                "SPOTRUNNER_BOOTSTRAP_DLQ_URL",
                "SPOTRUNNER_BOOTSTRAP_QUEUE_URL",
                "SPOTRUNNER_STOP_EVENTS_DLQ_URL",
                "SPOTRUNNER_STOP_EVENTS_QUEUE_URL",
            ],
        ),
        (
            "janitor",
            &["SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_JOBS_QUEUE_URL"],
        ),
        (
            "recovery",
            &["SPOTRUNNER_LEDGER_TABLE", "SPOTRUNNER_JOBS_QUEUE_URL"],
        ),
    ];
    for (function, vars) in expect {
        let e = &env[*function];
        assert_eq!(e["SPOTRUNNER_CONFIG_PARAMETER"], parameter, "{function}");
        assert_eq!(e["RUST_LOG"], "info", "{function}");
        for v in *vars {
            assert!(
                e[*v].as_str().is_some_and(|s| !s.is_empty()),
                "{function}: {v}"
            );
        }
    }
    let cr = &env["create-runner"];
    assert_eq!(
        cr["SPOTRUNNER_JOBS_QUEUE_URL"],
        *output(&outputs, "jobs_queue_url")
    );
    assert_eq!(
        cr["SPOTRUNNER_BOOTSTRAP_QUEUE_URL"],
        *output(&outputs, "bootstrap_queue_url")
    );
    assert_eq!(
        cr["SPOTRUNNER_LEDGER_TABLE"],
        *output(&outputs, "ledger_table")
    );
    assert_eq!(
        cr["SPOTRUNNER_SSM_DOCUMENT"],
        *output(&outputs, "ssm_document")
    );
    assert_eq!(cr["SPOTRUNNER_BUCKET"], *output(&outputs, "bucket"));
    assert_eq!(cr["SPOTRUNNER_BOOTSTRAP_SCRIPT_KEY"], "bootstrap.sh");
    // Each DLQ goes back to the queue it came from.
    let mover = &env["dlq-mover"];
    for (var, out) in [
        ("SPOTRUNNER_DLQ_URL", "dlq_url"),
        ("SPOTRUNNER_JOBS_QUEUE_URL", "jobs_queue_url"),
        ("SPOTRUNNER_BOOTSTRAP_DLQ_URL", "bootstrap_dlq_url"),
        ("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", "bootstrap_queue_url"),
        ("SPOTRUNNER_STOP_EVENTS_DLQ_URL", "stop_events_dlq_url"),
        ("SPOTRUNNER_STOP_EVENTS_QUEUE_URL", "stop_events_queue_url"),
    ] {
        assert_eq!(mover[var], *output(&outputs, out), "dlq-mover {var}");
    }
    let queue_urls: Vec<&Value> = [
        "jobs_queue_url",
        "dlq_url",
        "bootstrap_queue_url",
        "bootstrap_dlq_url",
        "stop_events_queue_url",
        "stop_events_dlq_url",
    ]
    .iter()
    .map(|o| output(&outputs, o))
    .collect();
    let distinct: std::collections::BTreeSet<_> =
        queue_urls.iter().map(|u| u.to_string()).collect();
    assert_eq!(distinct.len(), 6, "six distinct queues: {queue_urls:?}");

    // The SQS event sources: jobs and bootstrap -> create-runner, stop-events ->
    // stop-runner (EventBridge's runner events reach stop-runner only through
    // its queue), each with ReportBatchItemFailures.
    let functions = output(&outputs, "function_names");
    let mappings = output(&outputs, "event_source_mappings");
    let queue_name = |url: &Value| {
        url.as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    };
    for (queue, url, function) in [
        ("jobs", "jobs_queue_url", "create-runner"),
        ("bootstrap", "bootstrap_queue_url", "create-runner"),
        ("stop-events", "stop_events_queue_url", "stop-runner"),
    ] {
        let m = &mappings[queue];
        let arn = m["queue_arn"]
            .as_str()
            .unwrap_or_else(|| panic!("mapping {queue}: {m}"));
        assert!(
            arn.ends_with(&format!(":{}", queue_name(output(&outputs, url)))),
            "mapping {queue}: {arn}"
        );
        let fn_arn = m["function_arn"].as_str().unwrap();
        assert!(
            fn_arn.ends_with(&format!(
                ":function:{}",
                functions[function].as_str().unwrap()
            )),
            "mapping {queue} feeds {function}: {fn_arn}"
        );
        assert_eq!(
            m["function_response_types"],
            serde_json::json!(["ReportBatchItemFailures"]),
            "mapping {queue}"
        );
    }
    assert_eq!(mappings.as_object().unwrap().len(), 3, "{mappings}");
    let templates = output(&outputs, "launch_templates");
    for pool in &config.pools {
        assert_eq!(
            templates[&pool.name]["name"].as_str(),
            pool.launch_template.as_deref(),
            "pool {}",
            pool.name
        );
    }

    // The deployed parameter, read the way the Lambdas read it at cold start.
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        use spotrunner_core::ports::SecretStore;
        let sdk = spotrunner_aws::sdk::local(&endpoint).await;
        let stored = spotrunner_aws::ssm::SsmSecretStore::new(&sdk)
            .get_secret(parameter)
            .await
            .unwrap_or_else(|e| panic!("SSM parameter {parameter} on {endpoint}: {e}"));
        let deployed = load(&stored, "deployed SSM parameter");
        assert_eq!(
            deployed, config,
            "the SSM parameter holds the rendered document"
        );
        // The secrets it references exist.
        for secret in &deployed.webhook.secrets {
            if let SecretRef::Ssm(name) = secret {
                spotrunner_aws::ssm::SsmSecretStore::new(&sdk)
                    .get_secret(name)
                    .await
                    .unwrap_or_else(|e| panic!("webhook secret {name}: {e}"));
            }
        }
    }
}
