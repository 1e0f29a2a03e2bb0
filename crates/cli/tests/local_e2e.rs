//! End to end on the local backend, through HTTP: GitHub's own queued
//! `workflow_job` examples (signed by `@octokit/webhooks-methods`) → jobs wait
//! in their drained pools' lines → undrained, runners start as processes → the
//! jobs run → the runners exit → everything is cleaned up. `status --json` shows
//! each stage, and the fake GitHub saw one JIT call and one deletion per job.
//! While the runners run, no process's command line holds a JIT config; after
//! the run, no log line, tag, ledger item or queued message holds a secret.

mod common;

use common::*;
use serde_json::Value;
use spotrunner_testkit::examples::{examples, octokit_sign};
use spotrunner_testkit::fake_github::{FakeGitHub, endpoint};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

/// The package's queued examples, each `copies` times with fresh ids and a
/// `created_at` of now (so they are inside GitHub's 24 h queue window).
fn queued_payloads(copies: u64) -> Vec<(u64, Vec<String>, Value)> {
    let mut out = Vec::new();
    let queued: Vec<_> = examples("workflow_job")
        .into_iter()
        .filter(|e| e.action() == Some("queued"))
        .collect();
    assert_eq!(queued.len(), 2, "the package ships two queued examples");
    for c in 0..copies {
        for (i, ex) in queued.iter().enumerate() {
            let mut p = ex.payload.clone();
            let id = 9_000 + c * 10 + i as u64;
            p["workflow_job"]["id"] = id.into();
            p["workflow_job"]["created_at"] = chrono::Utc::now().to_rfc3339().into();
            let labels = p["workflow_job"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            out.push((id, labels, p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_to_runner_process_to_cleanup_with_every_stage_in_status() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let release = tmp.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    // A runner that records its argv and a hash of the JIT config it got in its
    // environment, then holds its job until the test releases it.
    let runner = runner_script(
        tmp.path(),
        &format!(
            "printf '%s' \"$ACTIONS_RUNNER_INPUT_JITCONFIG\" | sha256sum | cut -d' ' -f1 > \"$SPOTRUNNER_WORK_DIR/../jit.sha256\"\n\
             echo \"argv=[$*]\" > \"$SPOTRUNNER_WORK_DIR/../argv\"\n\
             while [ ! -e '{}'/\"$SPOTRUNNER_RUNNER_NAME\" ]; do sleep 0.1; done",
            release.display()
        ),
    );
    let pools = serde_json::json!([
        { "name": "ubuntu", "labels": ["ubuntu-latest"], "max_runners": 4 },
        { "name": "k8s", "labels": ["k8s"], "max_runners": 4 },
    ]);
    let cfg_path = tmp.path().join("config.json");
    write_json(
        &cfg_path,
        &config(
            &github,
            pools,
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    let state = tmp.path().join("state");
    let cfg = cfg_path.to_str().unwrap();
    let st = state.to_str().unwrap();
    let serve = Serve::start(&cfg_path, &state);

    // Drain both pools first: the jobs must wait, visibly queued.
    for pool in ["ubuntu", "k8s"] {
        let out = cli(&["drain", pool, "--config", cfg, "--state-dir", st]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let jobs = queued_payloads(2);
    let bodies: Vec<Vec<u8>> = jobs
        .iter()
        .map(|(_, _, p)| serde_json::to_vec(p).unwrap())
        .collect();
    let sigs = octokit_sign(SECRET, &bodies);
    let client = reqwest::Client::new();
    for ((body, sig), (id, _, p)) in bodies.iter().zip(&sigs).zip(&jobs) {
        let repo = p["repository"]["full_name"].as_str().unwrap();
        github.add_job(repo, *id, "queued");
        let code = post_webhook(&client, &serve.addr, "workflow_job", body, sig).await;
        assert_eq!(code, Some(202), "job {id}");
    }
    let ids: Vec<u64> = jobs.iter().map(|(id, _, _)| *id).collect();

    // Stage 1: waiting (in their drained pools' lines, nothing launched).
    wait_until("every job to show as waiting", LONG, || {
        let s = status(&cfg_path, &state);
        let states = job_states(&s);
        ids.iter()
            .all(|id| states.get(id).map(String::as_str) == Some("waiting"))
    });
    let s = status(&cfg_path, &state);
    assert_eq!(s["pools"]["ubuntu"]["drained"], true);
    assert_eq!(s["pools"]["ubuntu"]["waiting"], 2);
    assert_eq!(s["pools"]["k8s"]["waiting"], 2);
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), 0);
    assert!(instance_dirs(&state).is_empty());

    // Stage 2: launched — one runner process per job, running bootstrap.sh.
    for pool in ["ubuntu", "k8s"] {
        let out = cli(&["undrain", pool, "--config", cfg, "--state-dir", st]);
        assert!(out.status.success());
    }
    let mut runners = std::collections::BTreeMap::new();
    wait_until("a running runner process per job", LONG, || {
        let s = status(&cfg_path, &state);
        let states = job_states(&s);
        let running: Vec<&Value> = s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["state"] == "running")
            .collect();
        if !(ids
            .iter()
            .all(|id| states.get(id).map(String::as_str) == Some("launched"))
            && running.len() == ids.len())
        {
            return false;
        }
        let all: Vec<&Value> = ["ubuntu", "k8s"]
            .iter()
            .flat_map(|p| s["pools"][*p]["runners"].as_array().unwrap())
            .collect();
        if all.len() != ids.len() || all.iter().any(|r| r["state"] != "bootstrapped") {
            return false;
        }
        for pool in ["ubuntu", "k8s"] {
            for r in s["pools"][pool]["runners"].as_array().unwrap() {
                runners.insert(
                    r["job_id"].as_u64().unwrap(),
                    r["name"].as_str().unwrap().to_string(),
                );
            }
        }
        true
    });
    assert_eq!(runners.len(), ids.len());
    let s = status(&cfg_path, &state);
    assert_eq!(s["pools"]["ubuntu"]["used"], 2);
    assert_eq!(s["pools"]["k8s"]["used"], 2);
    assert_eq!(instance_dirs(&state).len(), ids.len());
    // The runner got its JIT config through bootstrap.sh, and the parameter is gone.
    wait_until("each runner to start with its JIT config", LONG, || {
        instance_dirs(&state)
            .iter()
            .all(|d| std::fs::read_to_string(d.join("argv")).is_ok_and(|a| !a.is_empty()))
    });
    // Each runner got the JIT config GitHub issued for it, in
    // ACTIONS_RUNNER_INPUT_JITCONFIG, and nothing on its command line.
    let issued: Vec<String> = github.issued_secrets();
    let issued_hashes: std::collections::BTreeSet<String> =
        issued.iter().map(|s| sha256_hex(s.as_bytes())).collect();
    for d in instance_dirs(&state) {
        let argv = std::fs::read_to_string(d.join("argv")).unwrap_or_default();
        assert_eq!(argv.trim(), "argv=[]");
        let got = std::fs::read_to_string(d.join("jit.sha256")).unwrap_or_default();
        assert!(
            issued_hashes.contains(got.trim()),
            "{d:?}: the runner's ACTIONS_RUNNER_INPUT_JITCONFIG is not a JIT config GitHub issued"
        );
    }
    // `ps` on the machine shows no JIT config while the runners run, and
    // neither serve's nor bootstrap.sh's own environment holds one.
    let ps = std::process::Command::new("ps")
        .args(["-eww", "-o", "pid=,args="])
        .output()
        .expect("ps runs");
    let ps = String::from_utf8_lossy(&ps.stdout);
    assert!(ps.contains("bootstrap.sh"), "ps sees the runners: {ps}");
    for secret in &issued {
        assert!(!ps.contains(secret.as_str()), "ps shows a JIT config");
    }
    for pid in processes_under(&state) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let is_bootstrap = String::from_utf8_lossy(&cmdline).contains("bootstrap.sh");
        for secret in &issued {
            assert!(
                !contains(&cmdline, secret),
                "pid {pid}: a JIT config in its argv"
            );
            if is_bootstrap {
                assert!(
                    !contains(&environ, secret),
                    "bootstrap.sh pid {pid}: a JIT config in its environment"
                );
            }
        }
    }
    let serve_env = std::fs::read(format!("/proc/{}/environ", serve.pid())).unwrap();
    for secret in &issued {
        assert!(!contains(&serve_env, secret));
    }
    assert_eq!(std::fs::read_dir(state.join("params")).unwrap().count(), 0);

    // Stage 3: running — GitHub says each job is in progress on its runner.
    for (id, _, p) in &jobs {
        let mut p = p.clone();
        p["action"] = "in_progress".into();
        p["workflow_job"]["status"] = "in_progress".into();
        p["workflow_job"]["runner_name"] = runners[id].clone().into();
        let body = serde_json::to_vec(&p).unwrap();
        let sig = octokit_sign(SECRET, std::slice::from_ref(&body)).remove(0);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    wait_until("every job running", LONG, || {
        let states = job_states(&status(&cfg_path, &state));
        ids.iter()
            .all(|id| states.get(id).map(String::as_str) == Some("running"))
    });

    // Stage 4: done — the runners exit; stop-runner cleans everything up.
    for name in runners.values() {
        std::fs::write(release.join(name), "").unwrap();
    }
    wait_until("every job completed and cleaned up", LONG, || {
        let s = status(&cfg_path, &state);
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
    let s = status(&cfg_path, &state);
    for pool in ["ubuntu", "k8s"] {
        assert_eq!(s["pools"][pool]["runners_by_state"]["released"], 2, "{s}");
        assert!(s["pools"][pool]["runners"].as_array().unwrap().is_empty());
    }
    assert!(
        instance_dirs(&state).is_empty(),
        "working directories removed"
    );
    assert!(processes_under(&state).is_empty(), "no runner process left");
    assert_eq!(github.calls(endpoint::GENERATE_JITCONFIG), ids.len());
    assert_eq!(github.calls(endpoint::DELETE_RUNNER), ids.len());
    assert!(github.runners().is_empty(), "every registration deleted");

    // The human table says the same.
    let out = cli(&["status", "--config", cfg, "--state-dir", st]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("completed 4"), "{table}");
    drop(serve);

    // No secret in any log line, tag, ledger item or queued message: every file
    // the run left (serve's log, the SQLite ledger and queues with their WAL),
    // and every status the CLI prints.
    let mut secrets = github.issued_secrets();
    assert_eq!(
        secrets.len(),
        ids.len(),
        "one JIT config per job (PAT auth: no tokens)"
    );
    secrets.extend([TOKEN.to_string(), SECRET.to_string()]);
    let mut scanned = 0;
    for file in files_under(&state) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        scanned += 1;
        for secret in &secrets {
            assert!(!contains(&bytes, secret), "{file:?} holds a secret");
        }
    }
    assert!(scanned >= 2, "the log and the database were scanned");
    let json = status(&cfg_path, &state).to_string();
    for secret in &secrets {
        assert!(!json.contains(secret.as_str()), "status shows a secret");
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
