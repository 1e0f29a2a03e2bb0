//! serve's life: a bad configuration refused at start and on reload (the old one
//! keeps serving), a good reload taken, SIGTERM mid-flow exits 0 with state kept
//! and a restart resumes, and the operator commands that need no serve.

mod common;

use common::*;
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn pools() -> serde_json::Value {
    serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 3 }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_is_refused_at_start_with_field_named_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    let mut bad = config(
        &github,
        serde_json::json!([{ "name": "Bad Pool", "labels": [], "max_runners": 0 }]),
        serde_json::json!({ "listen": "nowhere" }),
    );
    bad["deployment"] = "Bad_Deployment".into();
    let path = tmp.path().join("bad.json");
    write_json(&path, &bad);

    let err = Serve::try_start(&path, &tmp.path().join("state"))
        .err()
        .expect("serve must refuse a bad configuration");
    for field in [
        "deployment",
        "pools[0].name",
        "pools[0].labels",
        "pools[0].max_runners",
        "local.listen",
    ] {
        assert!(err.contains(field), "no error names {field}:\n{err}");
    }

    let out = cli(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pools[0].max_runners"), "{stderr}");
    assert!(out.stdout.is_empty());

    // A type error names its path too.
    let mut typed = config(&github, pools(), serde_json::json!({}));
    typed["pools"][0]["max_runners"] = "many".into();
    write_json(&path, &typed);
    let out = cli(&["config", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pools[0].max_runners"));

    // A good one prints the resolved document, defaults filled in.
    write_json(&path, &config(&github, pools(), serde_json::json!({})));
    let out = cli(&["config", "check", path.to_str().unwrap()]);
    assert!(out.status.success());
    let resolved: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resolved["pools"][0]["boot_timeout_secs"], 300);
    assert_eq!(resolved["local"]["janitor_interval_secs"], 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_bad_config_keeps_the_old_and_takes_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    let runner = runner_script(tmp.path(), "exit 0");
    let local = serde_json::json!({ "runner_command": runner.display().to_string() });
    write_json(&path, &config(&github, pools(), local.clone()));
    let mut serve = Serve::start(&path, &state);
    let client = reqwest::Client::new();

    let mut bad = config(&github, pools(), local.clone());
    bad["pools"][0]["max_runners"] = "many".into();
    write_json(&path, &bad);
    serve.signal(libc::SIGHUP);
    wait_until("the reload to be refused", LONG, || {
        serve.log_text().contains("configuration reload refused")
    });
    let log = serve.log_text();
    let refused = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(refused.contains("pools[0].max_runners"), "{refused}");
    assert!(refused.contains("\"level\":\"ERROR\""), "{refused}");

    // The old configuration still serves: `linux` matches, `arm` does not.
    let (body, sig) = job_payload("queued", 1, &["self-hosted", "linux"], None);
    assert_eq!(
        post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
        Some(202)
    );
    let (body, sig) = job_payload("queued", 2, &["self-hosted", "arm"], None);
    let resp = client
        .post(serve.url("/webhook"))
        .header("x-github-event", "workflow_job")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert!(
        v["ignored"].as_str().unwrap_or("").contains("no pool"),
        "{v}"
    );

    // A good document with a new pool is taken without a restart.
    let mut good = config(&github, pools(), local);
    good["pools"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({ "name": "arm", "labels": ["arm"], "max_runners": 1 }));
    write_json(&path, &good);
    wait_until("the reload to be taken", LONG, || {
        serve.log_text().contains("configuration reloaded")
    });
    let (body, sig) = job_payload("queued", 3, &["self-hosted", "arm"], None);
    let resp = client
        .post(serve.url("/webhook"))
        .header("x-github-event", "workflow_job")
        .header("x-hub-signature-256", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["pool"], "arm", "{v}");
    assert_eq!(serve.stop_with(libc::SIGTERM).code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_flow_exits_zero_keeps_state_and_a_restart_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let runner = runner_script(tmp.path(), "sleep 1");
    let path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    let mut serve = Serve::start(&path, &state);
    let client = reqwest::Client::new();
    let ids: Vec<u64> = (100..108).collect();
    for id in &ids {
        // GitHub will say the job ran and completed (stop-runner asks).
        github.add_job("octo-org/repo", *id, "completed");
        let (body, sig) = job_payload("queued", *id, &["self-hosted", "linux"], None);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    // Mid-flow: some runner launched, not all jobs done.
    wait_until("a first runner process", LONG, || {
        !instance_dirs(&state).is_empty()
    });
    let status_code = serve.stop_with(libc::SIGTERM);
    assert_eq!(status_code.code(), Some(0), "{}", serve.log_text());
    assert!(serve.log_text().contains("stopped; state kept"));

    // State kept: the jobs are in the ledger or still on the queue.
    let s = status(&path, &state);
    let states = job_states(&s);
    assert_eq!(states.len(), ids.len(), "{s}");
    assert!(
        states.values().any(|v| v != "completed"),
        "stopped mid-flow: {states:?}"
    );

    // A restart resumes and finishes every job, once each.
    let serve = Serve::start(&path, &state);
    wait_until("every job completed and cleaned up", LONG, || {
        let s = status(&path, &state);
        let states = job_states(&s);
        ids.iter()
            .all(|id| states.get(id).map(String::as_str) == Some("completed"))
            && s["capacity"]["weight_used"] == 0
            && s["instances"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["state"] == "terminated")
    });
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), ids.len());
    assert_eq!(github.calls(endpoint::DELETE_RUNNER), ids.len());
    assert!(instance_dirs(&state).is_empty());
    assert!(processes_under(&state).is_empty());
    drop(serve);
}

#[test]
fn match_explains_the_choice() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    std::fs::write(
        &path,
        r#"
deployment = "sr"
allow_public_repositories = true
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "gpu"
labels = ["linux", "gpu"]
max_runners = 1
[[pools]]
name = "linux"
labels = ["linux"]
max_runners = 1
"#,
    )
    .unwrap();
    let out = cli(&[
        "match",
        "--config",
        path.to_str().unwrap(),
        "self-hosted",
        "linux",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-> pool linux"), "{text}");
    assert!(text.contains("less specific"), "{text}");
    let out = cli(&["match", "--config", path.to_str().unwrap(), "windows"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lacks label(s) windows"));
}

#[test]
fn match_explains_the_sizing_or_why_it_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("config.toml");
    std::fs::write(
        &path,
        r#"
deployment = "sr"
allow_public_repositories = true
[github]
auth = { type = "pat", token = "env:T" }
[webhook]
secrets = ["value:s"]
[[pools]]
name = "build"
labels = ["linux"]
instance_types = ["m7i.large", "c7i.large"]
max_runners = 1
sizing = { cpu = [2, 16] }
"#,
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let out = cli(&["match", "--config", config, "linux", "spotrunner/cpu=8"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("-> pool build"), "{text}");
    assert!(
        text.contains("sizing cpu=8: 8 vCPU, >= 0 MiB, types m7i.* c7i.*; weight 4"),
        "{text}"
    );
    let out = cli(&["match", "--config", config, "linux", "spotrunner/cpu=32"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("sizing refused (the webhook ignores the job): label \"spotrunner/cpu=32\": 32 vCPUs is outside pool build's bounds: sizing.cpu = [2, 16]"),
        "{text}"
    );
}

#[test]
fn demo_runs_to_completion() {
    let out = cli(&["demo", "--jobs", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().all(|l| l.starts_with("[DEMO]")), "{stdout}");
    for stage in ["queued", "launching", "running", "done"] {
        assert!(stdout.contains(stage), "no {stage} line:\n{stdout}");
    }
    assert!(
        stdout.contains("3 JIT registration(s) and 3 runner deletion(s) for 3 job(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("runner processes left: 0"), "{stdout}");
}
