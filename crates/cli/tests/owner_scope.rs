//! Scope follows the owner: a job from a user's repository is served by an
//! org-scoped pool with a runner registered on the repository (a user has no
//! organisation endpoints: the fake GitHub answers 404 to `/orgs/{user}/…`,
//! as GitHub does).

mod common;

use common::{
    SECRET, Serve, TOKEN, job_states, post_webhook, runner_script, status, wait_until, write_json,
};
use spotrunner_testkit::fake_github::FakeGitHub;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_repository_gets_a_repository_runner_from_an_org_pool() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    github.add_repository("alice/dotfiles", "User", None);
    github.add_repository("octo-org/repo", "Organization", None);
    let ran = tmp.path().join("ran");
    let runner = runner_script(
        tmp.path(),
        &format!("echo \"$SPOTRUNNER_RUNNER_NAME\" >> '{}'", ran.display()),
    );
    let config = tmp.path().join("config.json");
    let state = tmp.path().join("state");
    write_json(
        &config,
        &common::config(
            &github,
            serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2, "scope": "org" }]),
            serde_json::json!({ "runner_command": runner.display().to_string() }),
        ),
    );
    let _serve = Serve::start(&config, &state);
    let client = reqwest::Client::new();
    for (job, repo, owner, kind) in [
        (4101_u64, "alice/dotfiles", "alice", "User"),
        (4102, "octo-org/repo", "octo-org", "Organization"),
    ] {
        github.add_job(repo, job, "completed");
        let body = serde_json::to_vec(&serde_json::json!({
            "action": "queued",
            "workflow_job": {
                "id": job, "run_id": job + 1, "run_attempt": 1, "status": "queued",
                "labels": ["self-hosted", "linux"], "created_at": chrono::Utc::now().to_rfc3339(),
            },
            "repository": { "full_name": repo, "owner": { "login": owner, "type": kind } },
        }))
        .unwrap();
        let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
        let code = post_webhook(&client, &_serve.addr, "workflow_job", &body, &sig).await;
        assert_eq!(code, Some(202), "job {job}");
    }
    wait_until("both jobs completed", Duration::from_secs(60), || {
        let s = job_states(&status(&config, &state));
        s.get(&4101).map(String::as_str) == Some("completed")
            && s.get(&4102).map(String::as_str) == Some("completed")
    });
    let jit: Vec<String> = github
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/generate-jitconfig"))
        .map(|r| r.path)
        .collect();
    assert!(
        jit.contains(&"/repos/alice/dotfiles/actions/runners/generate-jitconfig".to_string()),
        "{jit:?}"
    );
    assert!(
        jit.contains(&"/orgs/octo-org/actions/runners/generate-jitconfig".to_string()),
        "{jit:?}"
    );
    assert!(
        !jit.iter().any(|p| p.starts_with("/orgs/alice/")),
        "a user has no org runners: {jit:?}"
    );
    let runs = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
}
