//! `spotrunner doctor` against a real `serve` (its webhook answers GitHub's
//! deliveries) and the fake GitHub's App: a correct setup passes; each seeded
//! misconfiguration — a wrong webhook secret, the event not subscribed, the
//! App not installed for an allowed owner, a missing permission — fails its
//! own check with its fix, and the fix the doctor names for the secret
//! (`github-app webhook`) mends it.

mod common;

use common::*;
use serde_json::{Value, json};
use spotrunner_core::ports::RunnerScope;
use spotrunner_testkit::fake_github::{APP_ID, APP_PRIVATE_KEY_PEM, FakeGitHub};
use std::path::Path;

struct Setup {
    github: FakeGitHub,
    _tmp: tempfile::TempDir,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
    hook_url: String,
    _serve: Serve,
}

fn doc(github: &FakeGitHub, dir: &Path, owners: &[&str]) -> Value {
    let key = dir.join("app-key.pem");
    std::fs::write(&key, APP_PRIVATE_KEY_PEM).unwrap();
    let secret = dir.join("webhook-secret");
    std::fs::write(&secret, SECRET).unwrap();
    let runner = runner_script(dir, "exit 0");
    let mut d = config(
        github,
        json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
        json!({ "runner_command": runner }),
    );
    d["github"]["auth"] = json!({
        "type": "app",
        "app_id": APP_ID.parse::<u64>().unwrap(),
        "private_key": format!("file:{}", key.display()),
    });
    d["webhook"]["secrets"] = json!([format!("file:{}", secret.display())]);
    d["allowed_owners"] = json!(owners);
    d
}

async fn setup() -> Setup {
    let github = FakeGitHub::start().await;
    github.add_installation(RunnerScope::Org { org: "acme".into() });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.json");
    write_json(&config, &doc(&github, tmp.path(), &["acme"]));
    let state = tmp.path().join("state");
    let serve = Serve::start(&config, &state);
    let hook_url = serve.url("/webhook");
    github.set_webhook(&hook_url, SECRET);
    Setup {
        github,
        _tmp: tmp,
        config,
        state,
        hook_url,
        _serve: serve,
    }
}

impl Setup {
    /// `doctor --json`: (exit code, report).
    fn doctor(&self) -> (i32, Value) {
        let o = cli(&[
            "doctor",
            "--config",
            self.config.to_str().unwrap(),
            "--state-dir",
            self.state.to_str().unwrap(),
            "--webhook-url",
            &self.hook_url,
            "--json",
        ]);
        let report: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json: {e}\n{}\n{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        (o.status.code().unwrap_or(-1), report)
    }

    async fn ping(&self) -> u16 {
        self.github
            .deliver(
                "ping",
                br#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
            )
            .await
    }
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn failed_ids(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_setup_passes_and_a_wrong_secret_fails_until_the_named_fix_is_run() {
    let s = setup().await;
    assert_eq!(s.ping().await, 200, "serve accepts the ping");
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    for id in [
        "config",
        "local.runner",
        "local.state_dir",
        "github.credentials",
        "github.app.events",
        "github.app.permissions",
        "github.installation.acme",
        "github.webhook.url",
        "github.webhook.content_type",
        "github.webhook.secret",
        "github.deliveries",
    ] {
        assert_eq!(check(&report, id)["status"], "pass", "{id}: {report:#}");
    }

    // GitHub signs with another secret: our webhook refuses, the doctor says why.
    s.github.set_webhook(&s.hook_url, "not-our-secret");
    assert_eq!(s.ping().await, 401);
    let (code, report) = s.doctor();
    assert_eq!(code, 1);
    assert_eq!(
        failed_ids(&report),
        ["github.webhook.secret", "github.deliveries"],
        "{report:#}"
    );
    let c = check(&report, "github.webhook.secret");
    assert!(c["detail"].as_str().unwrap().contains("401"), "{c}");
    assert!(
        c["fix"]
            .as_str()
            .unwrap()
            .contains("spotrunner github-app webhook"),
        "{c}"
    );

    // The fix it names sets the App's webhook to our URL and current secret.
    let o = cli(&[
        "github-app",
        "webhook",
        "--config",
        s.config.to_str().unwrap(),
        "--url",
        &s.hook_url,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).contains(SECRET));
    assert_eq!(s.github.app_hook().secret, SECRET);
    assert_eq!(s.ping().await, 200);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_seeded_github_misconfiguration_fails_its_own_check_with_its_fix() {
    let s = setup().await;
    assert_eq!(s.ping().await, 200);

    // The App does not subscribe to workflow_job.
    let events = s.github.app_events();
    s.github.set_app_events(vec!["push".into()]);
    let (code, report) = s.doctor();
    assert_eq!(code, 1);
    assert_eq!(failed_ids(&report), ["github.app.events"], "{report:#}");
    assert!(
        check(&report, "github.app.events")["fix"]
            .as_str()
            .unwrap()
            .contains("Workflow job")
    );
    s.github.set_app_events(events);

    // A permission spotrunner needs is missing (re-runs need actions: write).
    let granted = s.github.app_permissions();
    let mut fewer = granted.clone();
    fewer.insert("actions".into(), "read".into());
    s.github.set_app_permissions(fewer);
    let (code, report) = s.doctor();
    assert_eq!(code, 1);
    let failed = failed_ids(&report);
    assert!(
        failed.contains(&"github.app.permissions".to_string()),
        "{report:#}"
    );
    let c = check(&report, "github.app.permissions");
    assert!(
        c["detail"].as_str().unwrap().contains("actions: write"),
        "{c}"
    );
    assert!(c["detail"].as_str().unwrap().contains("re-run"), "{c}");
    s.github.set_app_permissions(granted);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "{report:#}");

    // The webhook points elsewhere.
    s.github.set_webhook("https://old.example/webhook", SECRET);
    let (code, report) = s.doctor();
    assert_eq!(code, 1);
    let c = check(&report, "github.webhook.url");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap()
            .contains("https://old.example/webhook"),
        "{c}"
    );
    s.github.set_webhook(&s.hook_url, SECRET);

    // An allowed owner the App is not installed on.
    let tmp = tempfile::tempdir().unwrap();
    write_json(&s.config, &doc(&s.github, tmp.path(), &["acme", "globex"]));
    let (code, report) = s.doctor();
    assert_eq!(code, 1);
    assert_eq!(
        failed_ids(&report),
        ["github.installation.globex"],
        "{report:#}"
    );
    let fix = check(&report, "github.installation.globex")["fix"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(fix.contains("/installations/new"), "{fix}");

    // The text form says the same, one line a check, its fix below.
    let o = cli(&[
        "doctor",
        "-c",
        s.config.to_str().unwrap(),
        "--state-dir",
        s.state.to_str().unwrap(),
        "--webhook-url",
        &s.hook_url,
    ]);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("[FAIL] github.installation.globex: the App is not installed on globex"),
        "{text}"
    );
    assert!(
        text.contains("       fix: an owner of globex installs it:"),
        "{text}"
    );
    assert!(text.contains(" failed\n"), "{text}");
}

#[test]
fn a_bad_configuration_fails_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.json");
    std::fs::write(&path, r#"{"deployment":"x","github":{"auth":{"type":"app","app_id":"nope","private_key":"file:/k"}},"webhook":{"secrets":["env:S"]},"pools":[]}"#).unwrap();
    let o = cli(&["doctor", "-c", path.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let c = check(&report, "config");
    assert_eq!(c["status"], "fail");
    assert!(c["detail"].as_str().unwrap().contains("github.auth"), "{c}");
}

/// `doctor --backend aws` end to end: the deployed document read from SSM
/// (its App id an `ssm:` reference, as github-app create leaves it), the
/// resources from the environment Terraform's `cli_environment` exports, the
/// App's key from a SecureString; a pool's launch template that does not exist
/// fails its own check, naming the pool and the field to correct.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_a_missing_launch_template_fails_and_the_app_id_is_read_from_ssm() {
    use aws_sdk_ssm::types::ParameterType;
    let moto = spotrunner_testkit::moto::shared().await;
    let sdk = spotrunner_aws::sdk::local(moto.url()).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let github = FakeGitHub::start().await;
    github.add_installation(RunnerScope::Org { org: "acme".into() });
    let hook = "https://hooks.example/webhook";
    github.set_webhook(hook, SECRET);

    let put = |name: &'static str, value: String, kind: ParameterType| {
        let ssm = ssm.clone();
        async move {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(kind)
                .send()
                .await
                .unwrap();
        }
    };
    put("/dr/github/app-id", APP_ID.into(), ParameterType::String).await;
    put(
        "/dr/github/app-private-key",
        APP_PRIVATE_KEY_PEM.into(),
        ParameterType::SecureString,
    )
    .await;
    put(
        "/dr/webhook/secret",
        SECRET.into(),
        ParameterType::SecureString,
    )
    .await;
    let doc = json!({
        "deployment": "dr",
        "github": { "api_url": github.url(), "auth": {
            "type": "app", "app_id": "ssm:/dr/github/app-id",
            "private_key": "ssm:/dr/github/app-private-key" } },
        "webhook": { "secrets": ["ssm:/dr/webhook/secret"] },
        "allowed_owners": ["acme"],
        "pools": [{ "name": "linux", "labels": ["linux"], "max_runners": 2,
                    "launch_template": "dr-linux", "instance_types": ["m7i.large"] }],
    });
    put("/dr/config", doc.to_string(), ParameterType::SecureString).await;
    let mut urls = Vec::new();
    for q in ["dr-jobs", "dr-bootstrap", "dr-jobs-dlq"] {
        let out = sqs.create_queue().queue_name(q).send().await.unwrap();
        urls.push(out.queue_url.unwrap());
    }
    spotrunner_aws::dynamodb::create_table(&aws_sdk_dynamodb::Client::new(&sdk), "dr-ledger")
        .await
        .unwrap();
    create_runner_document(&ssm, "dr-runner").await;

    let o = std::process::Command::new(BIN)
        .args(["doctor", "--backend", "aws", "--json"])
        .envs(moto_env(moto.url()))
        .env("SPOTRUNNER_CONFIG_PARAMETER", "/dr/config")
        .env("SPOTRUNNER_WEBHOOK_URL", hook)
        .env("SPOTRUNNER_JOBS_QUEUE_URL", &urls[0])
        .env("SPOTRUNNER_BOOTSTRAP_QUEUE_URL", &urls[1])
        .env("SPOTRUNNER_DLQ_URL", &urls[2])
        .env("SPOTRUNNER_LEDGER_TABLE", "dr-ledger")
        .env_remove("SPOTRUNNER_SSM_DOCUMENT")
        .env_remove("SPOTRUNNER_CONFIG")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(o.status.code(), Some(1), "{report:#}");
    let t = check(&report, "aws.launch_template.linux");
    assert_eq!(t["status"], "fail", "{t}");
    assert!(t["detail"].as_str().unwrap().contains("dr-linux"), "{t}");
    assert!(
        t["fix"]
            .as_str()
            .unwrap()
            .contains("pools[0].launch_template"),
        "{t}"
    );
    for id in [
        "aws.config_parameter",
        "aws.environment",
        "aws.queue.jobs",
        "aws.ledger",
        "aws.ssm_document",
        "aws.secret.github.auth.app_id",
        "aws.secret.github.auth.private_key",
        "github.credentials",
        "github.installation.acme",
        "github.webhook.url",
    ] {
        assert_eq!(check(&report, id)["status"], "pass", "{id}: {report:#}");
    }
    assert!(!String::from_utf8_lossy(&o.stdout).contains(SECRET));
}

/// Who can run code on our runners: a pool that serves public repositories
/// and a runner group where GitHub allows them are warnings (named, with
/// the GitHub setting to change); an empty `allowed_owners` is a warning
/// locally and a failure on AWS (its validation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_repositories_and_any_owner_are_named_by_the_doctor() {
    let s = setup().await;
    // The shared test document serves public repositories (GitHub's
    // examples are public): start from the default instead.
    let mut d: Value = serde_json::from_slice(&std::fs::read(&s.config).unwrap()).unwrap();
    d.as_object_mut()
        .unwrap()
        .remove("allow_public_repositories");
    write_json(&s.config, &d);
    let (_, report) = s.doctor();
    for id in [
        "security.allowed_owners",
        "security.public_repositories",
        "github.runner_groups.acme",
    ] {
        assert_eq!(check(&report, id)["status"], "pass", "{id}: {report:#}");
    }

    // GitHub's switch on, our pool refusing public repositories: GitHub could
    // hand our runner to a public repository's job. A failure.
    s.github
        .set_runner_group_allows_public("acme", "Default", true);
    let (code, report) = s.doctor();
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        failed_ids(&report),
        ["github.runner_groups.acme"],
        "{report:#}"
    );
    let group = check(&report, "github.runner_groups.acme");
    assert!(
        group["detail"]
            .as_str()
            .unwrap()
            .contains("fork pull request"),
        "{group}"
    );
    assert!(
        group["fix"]
            .as_str()
            .unwrap()
            .contains("Allow public repositories"),
        "{group}"
    );

    let mut d: Value = serde_json::from_slice(&std::fs::read(&s.config).unwrap()).unwrap();
    d["pools"][0]["allow_public_repositories"] = json!(true);
    d["allowed_owners"] = json!([]);
    write_json(&s.config, &d);
    let (code, report) = s.doctor();
    assert_eq!(code, 0, "warnings only: {report:#}");
    let public = check(&report, "security.public_repositories");
    assert_eq!(public["status"], "warn", "{public}");
    assert!(
        public["detail"].as_str().unwrap().contains("linux"),
        "{public}"
    );
    assert!(
        public["fix"]
            .as_str()
            .unwrap()
            .contains("outside collaborators"),
        "{public}"
    );
    let group = check(&report, "github.runner_groups.acme");
    assert_eq!(group["status"], "warn", "{group}");
    assert!(
        group["detail"].as_str().unwrap().contains("Default"),
        "{group}"
    );
    let owners = check(&report, "security.allowed_owners");
    assert_eq!(owners["status"], "warn", "{owners}");

    // On AWS the same document is refused, naming the field.
    let o = cli(&[
        "doctor",
        "--backend",
        "aws",
        "--config",
        s.config.to_str().unwrap(),
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1), "{report:#}");
    let c = check(&report, "config");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["detail"].as_str().unwrap().contains("allowed_owners"),
        "{c}"
    );
}
