//! A full pool on the local backend: jobs wait in the pool's line in GitHub's
//! queue order (`created_at`), not in the order their webhooks came, and each
//! runner's end hands its slot to the oldest waiting job at once — no timer.
//! `status` counts them as waiting; `spotrunner job ID` shows each one's way.

mod common;

use common::*;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);
const REPO: &str = "octo-org/repo";

/// A queued `workflow_job` GitHub created `secs` after `t0`, signed.
fn queued(id: u64, t0: chrono::DateTime<chrono::Utc>, secs: i64) -> (Vec<u8>, String) {
    let created = (t0 + chrono::Duration::seconds(secs)).to_rfc3339();
    let body = serde_json::to_vec(&serde_json::json!({
        "action": "queued",
        "workflow_job": {
            "id": id, "run_id": id + 1_000_000, "run_attempt": 1, "status": "queued",
            "labels": ["self-hosted", "linux"], "created_at": created, "runner_name": null,
        },
        "repository": { "full_name": REPO, "owner": { "login": "octo-org", "type": "Organization" } },
    }))
    .unwrap();
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The job id in a runner name `e2e_linux-<job>-<attempt>`.
fn job_of(runner: &str) -> u64 {
    runner.rsplit('-').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_serves_its_line_oldest_first_as_slots_free() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let started = tmp.path().join("started");
    let release = tmp.path().join("release");
    std::fs::create_dir_all(&release).unwrap();
    // Each runner notes its start, then holds its slot until the test lets it go.
    let runner = runner_script(
        tmp.path(),
        &format!(
            "echo \"$SPOTRUNNER_RUNNER_NAME\" >> '{}'\n\
             while [ ! -e '{}'/\"$SPOTRUNNER_RUNNER_NAME\" ]; do sleep 0.05; done",
            started.display(),
            release.display()
        ),
    );
    let cfg_path = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &cfg_path,
        &config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 1 }]),
            serde_json::json!({
                "runner_command": runner.display().to_string(),
                // No janitor pass during the test: only releases wake the line.
                "janitor_interval_secs": 3600,
            }),
        ),
    );
    let serve = Serve::start(&cfg_path, &state);
    let client = reqwest::Client::new();
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let ids: Vec<u64> = (1..=5).map(|i| 81_000 + i).collect();
    for id in &ids {
        github.add_job(REPO, *id, "queued");
    }
    // The newest job arrives first and takes the only slot.
    let (body, sig) = queued(ids[4], t0, 50);
    assert_eq!(
        post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
        Some(202)
    );
    wait_until("the first runner to start", LONG, || {
        lines(&started).len() == 1
    });
    // The others arrive newest first too; GitHub queued them oldest first.
    for (i, id) in ids[..4].iter().enumerate().rev() {
        let (body, sig) = queued(*id, t0, i as i64 * 10);
        assert_eq!(
            post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await,
            Some(202)
        );
    }
    wait_until("four jobs waiting in the line", LONG, || {
        let s = status(&cfg_path, &state);
        s["pools"]["linux"]["waiting"] == 4
            && job_states(&s).values().filter(|v| *v == "waiting").count() == 4
    });
    assert_eq!(
        lines(&started).len(),
        1,
        "nothing else launched: the pool is full"
    );

    // Let each runner go in turn: the freed slot goes to the oldest waiting job.
    for n in 1..=5 {
        let current = lines(&started).last().unwrap().clone();
        github.add_job(REPO, job_of(&current), "completed");
        std::fs::write(release.join(&current), "").unwrap();
        if n < 5 {
            wait_until("the next runner to start", LONG, || {
                lines(&started).len() == n + 1
            });
            let s = status(&cfg_path, &state);
            assert!(s["pools"]["linux"]["used"].as_u64().unwrap() <= 1, "{s}");
        }
    }
    let order: Vec<u64> = lines(&started).iter().map(|r| job_of(r)).collect();
    assert_eq!(
        order,
        [ids[4], ids[0], ids[1], ids[2], ids[3]],
        "the first arrival, then GitHub's queue order"
    );
    wait_until("every job completed", LONG, || {
        let s = status(&cfg_path, &state);
        let states = job_states(&s);
        ids.iter()
            .all(|id| states.get(id).map(String::as_str) == Some("completed"))
            && s["pools"]["linux"]["waiting"] == 0
            && s["pools"]["linux"]["used"] == 0
    });

    // The timeline of a job that waited, as `spotrunner job` prints it.
    let cfg = cfg_path.to_str().unwrap();
    let st = state.to_str().unwrap();
    let id = ids[2].to_string();
    let out = cli(&["job", &id, "--json", "--config", cfg, "--state-dir", st]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["path"], "waited", "{v}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    for stage in [
        "created",
        "received",
        "claimed",
        "waiting_since",
        "waiting_until",
        "jit_registered",
        "launch_requested",
        "instance_running",
        "bootstrap_sent",
        "released",
    ] {
        assert!(stages.contains(&stage), "{stage} missing from {stages:?}");
    }
    let text = cli(&["job", &id, "--config", cfg, "--state-dir", st]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("waited path"), "{text}");
    let missing = cli(&["job", "424242", "--config", cfg, "--state-dir", st]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("job 424242 is not in the ledger"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    drop(serve);
}
