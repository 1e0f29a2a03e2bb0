//! GitHub's own webhook examples (npm `@octokit/webhooks-examples`) and signatures
//! made by `sign()` of `@octokit/webhooks-methods`. Installed on first use with
//! `npm ci` into `testdata/npm/node_modules` (pinned by its package-lock.json).

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Once;

/// `testdata/npm` in the repository.
pub fn npm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/npm")
}

static INSTALL: Once = Once::new();

/// Make sure the npm fixtures are installed (runs `npm ci` once if they are not).
pub fn ensure_installed() {
    INSTALL.call_once(|| {
        let dir = npm_dir();
        if dir.join("node_modules/@octokit/webhooks-examples").is_dir()
            && dir.join("node_modules/@octokit/webhooks-methods").is_dir()
        {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm must be installed to fetch @octokit/webhooks-examples");
        assert!(status.success(), "npm ci in {} failed", dir.display());
    });
}

/// One example payload and where it came from (`api.github.com`, `ghes-35`, ...).
#[derive(Debug, Clone)]
pub struct Example {
    pub source: String,
    pub event: String,
    pub payload: Value,
}

impl Example {
    /// The payload's exact bytes as GitHub would send them (compact JSON).
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.payload).expect("example serializes")
    }
    pub fn action(&self) -> Option<&str> {
        self.payload.get("action").and_then(Value::as_str)
    }
}

/// Every example of `event` in every index the package ships.
///
/// One repair: the examples name `Codertocat/Hello-World` as owned by
/// `Octocoders`, which no real delivery does (a repository's `full_name`
/// starts with its `owner.login`), and the webhook refuses such a payload with
/// a 400. Where the two disagree, `full_name` becomes `{owner.login}/{name}`.
pub fn examples(event: &str) -> Vec<Example> {
    ensure_installed();
    let root = npm_dir().join("node_modules/@octokit/webhooks-examples");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("examples package")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("index.json").is_file())
        .collect();
    dirs.sort_by_key(|e| e.file_name());
    for d in dirs {
        let source = d.file_name().to_string_lossy().to_string();
        let text = std::fs::read_to_string(d.path().join("index.json")).expect("read index");
        let index: Vec<Value> = serde_json::from_str(&text).expect("index.json parses");
        for entry in index.iter().filter(|e| e["name"] == event) {
            for ex in entry["examples"].as_array().into_iter().flatten() {
                let mut payload = ex.clone();
                owner_owns_repository(&mut payload);
                out.push(Example {
                    source: source.clone(),
                    event: event.to_string(),
                    payload,
                });
            }
        }
    }
    out
}

/// `repository.full_name` = `{owner.login}/{name}` when its owner part differs.
fn owner_owns_repository(payload: &mut Value) {
    let repo = &payload["repository"];
    let (Some(login), Some(name), Some(full)) = (
        repo["owner"]["login"].as_str(),
        repo["name"].as_str(),
        repo["full_name"].as_str(),
    ) else {
        return;
    };
    if full.split_once('/').map(|(o, _)| o) != Some(login) {
        let fixed = format!("{login}/{name}");
        payload["repository"]["full_name"] = Value::String(fixed);
    }
}

/// Signatures computed by `@octokit/webhooks-methods`' `sign(secret, payload)`,
/// one per payload, in one node process.
pub fn octokit_sign(secret: &str, payloads: &[Vec<u8>]) -> Vec<String> {
    ensure_installed();
    let input = serde_json::json!({
        "secret": secret,
        "payloads": payloads.iter().map(|p| String::from_utf8(p.clone()).expect("utf-8 payload")).collect::<Vec<_>>(),
    });
    let mut child = Command::new("node")
        .arg("sign.mjs")
        .current_dir(npm_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to node");
    let out = child.wait_with_output().expect("node ran");
    assert!(out.status.success(), "sign.mjs failed");
    serde_json::from_slice(&out.stdout).expect("sign.mjs prints a JSON array")
}
