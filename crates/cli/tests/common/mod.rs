//! Shared by the CLI tests: a fake GitHub, a configuration on disk, `spotrunner
//! serve` as a real child process (SIGTERM / SIGKILL), the CLI itself, and
//! signed webhooks. No timing assertions: every wait is "until, or fail after a
//! generous deadline".

#![allow(dead_code)]

use serde_json::Value;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-secret";
pub const TOKEN: &str = "e2e-token";
pub const BIN: &str = env!("CARGO_BIN_EXE_spotrunner");

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A runner command: a shell script with `body`, executable.
pub fn runner_script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("runner.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A valid configuration document for `github` with these pools (JSON values)
/// and `local` overrides.
pub fn config(github: &FakeGitHub, pools: Value, local: Value) -> Value {
    let mut l = serde_json::json!({
        "listen": "127.0.0.1:0",
        "visibility_timeout_secs": 4,
        "claim_lease_secs": 2,
        // These tests' runners write into the test's own directories (root's
        // when the tests run as root); runner isolation has its own test
        // (local_isolation.rs), which removes this.
        "runner_user": "root",
    });
    if let (Some(base), Some(extra)) = (l.as_object_mut(), local.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "deployment": "e2e",
        "allow_public_repositories": true,
        "github": { "api_url": github.url(), "auth": { "type": "pat", "token": format!("value:{TOKEN}") } },
        "webhook": { "secrets": [format!("value:{SECRET}")] },
        "pools": pools,
        "local": l,
    })
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// `spotrunner ARGS…`.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("spotrunner runs")
}

/// `spotrunner status --json` against a state directory.
pub fn status(config: &Path, state: &Path) -> Value {
    let out = cli(&[
        "status",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status --json prints JSON")
}

/// `spotrunner serve` as a child process.
pub struct Serve {
    child: Option<Child>,
    pub addr: String,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(config: &Path, state: &Path) -> Serve {
        Self::try_start(config, state).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start and wait until it listens; `Err` with its log when it exits first.
    pub fn try_start(config: &Path, state: &Path) -> Result<Serve, String> {
        Self::start_with(config, state, &[])
    }

    /// Start with extra arguments and environment (`--backend aws`, `AWS_*`).
    pub fn start_with(
        config: &Path,
        state: &Path,
        extra: &[(&str, &str)],
    ) -> Result<Serve, String> {
        std::fs::create_dir_all(state).unwrap();
        let addr_file = state.join("serve.addr");
        let _ = std::fs::remove_file(&addr_file);
        let n = std::fs::read_dir(state).map(|d| d.count()).unwrap_or(0);
        let log = state.join(format!("serve-{n}-{}.log", std::process::id()));
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .args(
                extra
                    .iter()
                    .filter(|(k, _)| k.starts_with("--"))
                    .flat_map(|(k, v)| [*k, *v]),
            )
            .envs(extra.iter().filter(|(k, _)| !k.starts_with("--")).copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn serve");
        let mut s = Serve {
            child: Some(child),
            addr: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file)
                && !a.trim().is_empty()
            {
                s.addr = a.trim().to_string();
                return Ok(s);
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                s.child = None;
                return Err(format!(
                    "serve exited at start ({status}):\n{}",
                    std::fs::read_to_string(&s.log).unwrap_or_default()
                ));
            }
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Send `sig` and wait for the exit.
    pub fn stop_with(&mut self, sig: i32) -> ExitStatus {
        self.signal(sig);
        let mut child = self.child.take().expect("running");
        child.wait().expect("wait for serve")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// POST a signed webhook; the HTTP status, or `None` when nobody answered.
pub async fn post_webhook(
    client: &reqwest::Client,
    addr: &str,
    event: &str,
    body: &[u8],
    signature: &str,
) -> Option<u16> {
    client
        .post(format!("http://{addr}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", signature)
        .timeout(Duration::from_secs(10))
        .body(body.to_vec())
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// A minimal `workflow_job` payload (GitHub's shape), signed with [`SECRET`].
pub fn job_payload(
    action: &str,
    id: u64,
    labels: &[&str],
    runner: Option<&str>,
) -> (Vec<u8>, String) {
    let now = chrono::Utc::now().to_rfc3339();
    let body = serde_json::to_vec(&serde_json::json!({
        "action": action,
        "workflow_job": {
            "id": id, "run_id": id + 1_000_000, "run_attempt": 1, "status": action,
            "labels": labels, "created_at": now, "started_at": now, "runner_name": runner,
        },
        "repository": { "full_name": "octo-org/repo", "owner": { "login": "octo-org", "type": "Organization" } },
    }))
    .unwrap();
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

/// Runner processes whose working directory is under `dir` (none must be left).
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd"))
            && cwd.starts_with(dir)
        {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if !zombie {
                out.push(pid);
            }
        }
    }
    out
}

/// Working directories of runner instances left in a state directory.
pub fn instance_dirs(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("instances"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Jobs in `status` by id → state.
pub fn job_states(status: &Value) -> std::collections::BTreeMap<u64, String> {
    status["jobs"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            (
                j["job_id"].as_u64().unwrap(),
                j["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A runner command that plays the actions runner against the fake GitHub's
/// dispatch (`crates/fake-github/src/dispatch.rs`): it asks
/// `POST {github_url}/_fake/runners/$SPOTRUNNER_RUNNER_NAME/acquire` every
/// ~50 ms until GitHub gives it a job (whichever fits it, not necessarily the
/// one it was launched for), writes the job id to `$SPOTRUNNER_WORK_DIR/../job`,
/// holds it until `hold/<job_id>` exists (when `hold` is given), then
/// completes it (`…/complete`, retried until answered) and exits 0. It never
/// exits before it got a job, unless killed.
pub fn dispatch_runner_script(dir: &Path, github_url: &str, hold: Option<&Path>) -> PathBuf {
    let path = dir.join("dispatch-runner.sh");
    let body = spotrunner_testkit::fake_github::dispatch_runner_script(github_url, hold);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The standard AWS environment pointing a child process at moto.
pub fn moto_env(url: &str) -> [(&'static str, String); 4] {
    [
        ("AWS_ENDPOINT_URL", url.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

/// The runner bootstrap SSM document (scripts/runner/ssm-document.yaml) as `name`.
pub async fn create_runner_document(ssm: &aws_sdk_ssm::Client, name: &str) {
    ssm.create_document()
        .name(name)
        .content(include_str!("../../../../scripts/runner/ssm-document.yaml"))
        .document_format(aws_sdk_ssm::types::DocumentFormat::Yaml)
        .document_type(aws_sdk_ssm::types::DocumentType::Command)
        .send()
        .await
        .unwrap();
}
