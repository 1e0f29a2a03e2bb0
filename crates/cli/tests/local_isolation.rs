//! Local mode keeps its secrets from the jobs it runs (issue 26, item 2).
//!
//! `serve` holds the GitHub token and the webhook secret in its environment
//! (`env:` references, as `examples/local.toml` does) plus an unrelated canary
//! variable, and the state directory holds another runner's pending JIT
//! parameter. Two runners run at once; each one, as a hostile job would, dumps
//! its environment, lists the state directory, reads every parameter and every
//! process's environment it can, and tries to write `bootstrap.sh`, the `aws`
//! shim, the SQLite ledger, the parameters and the other runner's directory.
//! It finds no secret but its own JIT config, and changes nothing. When the
//! test runs as root (as `serve` does here), each runner runs as its own
//! unprivileged account.

mod common;

use common::*;
use spotrunner_testkit::fake_github::FakeGitHub;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);
const CANARY: &str = "canary-value-of-an-unrelated-serve-variable";
const DECOY: &str = "decoy-jit-config-of-another-runner";
const MARK: &str = "WRITTEN-BY-A-JOB";

/// The probe a runner runs: everything it finds goes to `<instance>/probe.txt`.
fn probe_script(dir: &Path, state: &Path) -> PathBuf {
    let body = format!(
        r#"state='{state}'; go='{go}'; stop='{stop}'
me="$SPOTRUNNER_WORK_DIR/.."
printf '%s' "$ACTIONS_RUNNER_INPUT_JITCONFIG" | sha256sum | cut -d' ' -f1 > "$me/jit.sha256"
id -u > "$me/uid"
touch "$me/ready"
while [ ! -e "$go" ] && [ ! -e "$stop" ]; do sleep 0.1; done
{{
echo '== env'; env
echo '== ls'; ls -laR "$state" 2>&1
echo '== params'; for f in "$state"/params/* "$state"/params/.*; do cat "$f" 2>&1; echo; done
echo '== jit'; for f in "$state"/instances/*/jit/*; do cat "$f" 2>&1; echo; done
echo '== environ'; for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done
echo '== writes'
for f in "$state/bin/bootstrap.sh" "$state/bin/aws" "$state"/params/*; do
    (echo '{MARK}' >> "$f") 2>/dev/null && echo "WROTE $f"
done
for f in "$state/spotrunner.db" "$state/spotrunner.db-wal"; do
    (: >> "$f") 2>/dev/null && echo "WROTE $f"
done
for f in "$state/pwned" "$state/params/pwned" "$state/bin/pwned" "$state/instances/pwned"; do
    (echo '{MARK}' > "$f") 2>/dev/null && echo "WROTE $f"
done
for d in "$state"/instances/*/; do
    case "$d" in *"/$SPOTRUNNER_INSTANCE_ID/") continue ;; esac
    (echo '{MARK}' > "$d/pwned") 2>/dev/null && echo "WROTE $d/pwned"
done
}} > "$me/probe.txt" 2>&1
touch "$me/probed"
while [ ! -e "$stop" ]; do sleep 0.1; done"#,
        state = state.display(),
        go = dir.join("GO").display(),
        stop = dir.join("STOP").display(),
    );
    runner_script(dir, &body)
}

/// The runners' working directories (a file a job planted there is not one).
fn runner_dirs(state: &Path) -> Vec<PathBuf> {
    instance_dirs(state)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// A signed `queued` delivery of a private repository's job labelled `linux`.
fn private_queued(id: u64) -> (Vec<u8>, String) {
    let (body, _) = job_payload("queued", id, &["linux"], None);
    let mut p: serde_json::Value = serde_json::from_slice(&body).unwrap();
    p["repository"]["private"] = true.into();
    let body = serde_json::to_vec(&p).unwrap();
    let sig = spotrunner_core::webhook::sign(SECRET.as_bytes(), &body);
    (body, sig)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_finds_no_secret_of_serve_or_other_runners_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let github = FakeGitHub::start().await;
    github.set_pat(TOKEN);
    let state = tmp.path().join("state");
    // Another runner's JIT parameter, pending, as FileParameters writes it.
    let params = state.join("params");
    std::fs::create_dir_all(&params).unwrap();
    let decoy = params.join("%2Fspotrunner%2Fe2e%2Fjit%2Fother-runner");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&decoy)
            .unwrap();
        f.write_all(DECOY.as_bytes()).unwrap();
    }
    let runner = probe_script(tmp.path(), &state);
    let mut doc = config(
        &github,
        serde_json::json!([{ "name": "linux", "labels": ["linux"], "max_runners": 2 }]),
        serde_json::json!({ "runner_command": runner.display().to_string() }),
    );
    // The configuration's defaults, whatever the shared helper sets.
    doc["local"].as_object_mut().unwrap().remove("runner_user");
    doc["github"]["auth"]["token"] = "env:ISOLATION_GITHUB_TOKEN".into();
    doc["webhook"]["secrets"] = serde_json::json!(["env:ISOLATION_WEBHOOK_SECRET"]);
    let cfg_path = tmp.path().join("config.json");
    write_json(&cfg_path, &doc);
    let mut serve = Serve::start_with(
        &cfg_path,
        &state,
        &[
            ("ISOLATION_GITHUB_TOKEN", TOKEN),
            ("ISOLATION_WEBHOOK_SECRET", SECRET),
            ("ISOLATION_CANARY", CANARY),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let client = reqwest::Client::new();
    for id in [71, 72] {
        github.add_job("octo-org/repo", id, "queued");
        let (body, sig) = private_queued(id);
        let code = post_webhook(&client, &serve.addr, "workflow_job", &body, &sig).await;
        assert_eq!(code, Some(202), "job {id}");
    }
    // Both runners run at once before either probes.
    wait_until("two runners started", LONG, || {
        let dirs = runner_dirs(&state);
        dirs.len() == 2 && dirs.iter().all(|d| d.join("ready").exists())
    });
    std::fs::write(tmp.path().join("GO"), "").unwrap();
    wait_until("both runners probed", LONG, || {
        runner_dirs(&state)
            .iter()
            .all(|d| d.join("probed").exists())
    });

    let issued = github.issued_secrets();
    assert_eq!(issued.len(), 2, "one JIT config per runner");
    let mut uids = BTreeSet::new();
    for d in runner_dirs(&state) {
        let probe = std::fs::read_to_string(d.join("probe.txt")).unwrap();
        let own = std::fs::read_to_string(d.join("jit.sha256")).unwrap();
        let own = own.trim();
        assert!(
            issued.iter().any(|s| sha256_hex(s.as_bytes()) == own),
            "{d:?}: the runner got a JIT config GitHub issued"
        );
        // The runner has what it needs…
        for var in [
            "PATH=",
            "HOME=",
            "SPOTRUNNER_RUNNER_NAME=",
            "SPOTRUNNER_WORK_DIR=",
        ] {
            assert!(
                probe.lines().any(|l| l.starts_with(var)),
                "{d:?}: {var} missing"
            );
        }
        // …and no secret but its own JIT config.
        let mut secrets = vec![TOKEN, SECRET, CANARY, DECOY];
        secrets.extend(
            issued
                .iter()
                .filter(|s| sha256_hex(s.as_bytes()) != own)
                .map(String::as_str),
        );
        for secret in secrets {
            assert!(
                !probe.contains(secret),
                "{d:?}: the job found the secret {secret:?}:\n{probe}"
            );
        }
        assert!(
            !probe.contains("ISOLATION_"),
            "{d:?}: serve's variables reach the job:\n{probe}"
        );
        let wrote: Vec<&str> = probe.lines().filter(|l| l.starts_with("WROTE ")).collect();
        assert!(wrote.is_empty(), "{d:?}: the job could write {wrote:?}");
        // Its JIT config is gone once read.
        let jit_left: Vec<PathBuf> = files_under(&d.join("jit"));
        assert!(jit_left.is_empty(), "{d:?}: JIT files left: {jit_left:?}");
        uids.insert(
            std::fs::read_to_string(d.join("uid"))
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    // Nothing changed: the scripts are the binary's, the pending parameter is
    // intact, no file holds the mark, and the only parameter is the decoy.
    assert_eq!(
        std::fs::read_to_string(state.join("bin/bootstrap.sh")).unwrap(),
        spotrunner_local::shim::BOOTSTRAP_SH
    );
    assert_eq!(
        std::fs::read_to_string(state.join("bin/aws")).unwrap(),
        spotrunner_local::shim::AWS_SHIM
    );
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), DECOY);
    let left: Vec<PathBuf> = std::fs::read_dir(&params)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(left, vec![decoy.clone()], "parameters left");
    for file in files_under(&state) {
        assert!(
            file.file_name().is_none_or(|n| n != "pwned"),
            "{file:?} was created by a job"
        );
        if !file.starts_with(state.join("instances")) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(MARK.len()).any(|w| w == MARK.as_bytes()),
                "{file:?} was written by a job"
            );
        }
    }
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(uids.len(), 2, "each runner its own account: {uids:?}");
        assert!(!uids.contains("0"), "runners do not run as root: {uids:?}");
    }

    serve.stop_with(libc::SIGKILL);
    std::fs::write(tmp.path().join("STOP"), "").unwrap();
    wait_until("the runners to end", LONG, || {
        processes_under(&state).is_empty()
    });
}
