//! What a local "instance" runs: the project's own `scripts/runner/bootstrap.sh`
//! (embedded at build time) and an `aws` shim on its PATH that serves the few
//! calls the script makes from the state directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The runner bootstrap script, byte for byte as the SSM document runs it.
pub const BOOTSTRAP_SH: &str = include_str!("../../../scripts/runner/bootstrap.sh");

/// `aws ssm get-parameter|delete-parameter` on `$SPOTRUNNER_LOCAL_PARAMS` (the
/// runner's own `jit/` directory; a parameter is deleted once read),
/// `aws s3 cp` (downloads) and `aws s3api put-object --if-none-match '*'`
/// (new objects only, as the runner role allows) on `$SPOTRUNNER_LOCAL_BUCKET`.
/// Anything else fails loudly.
pub const AWS_SHIM: &str = r#"#!/bin/sh
# spotrunner local mode: the aws calls of bootstrap.sh, on local files.
set -eu
enc() { printf '%s' "$1" | sed -e 's/%/%25/g' -e 's|/|%2F|g'; }
while [ "${1:-}" = "--region" ]; do shift 2; done
svc="${1:-}"; op="${2:-}"; shift 2 || true
name=""; src=""; dst=""; bucket_key=""; body=""; if_none_match=""
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name="$2"; shift 2 ;;
        --key) bucket_key="$2"; shift 2 ;;
        --body) body="$2"; shift 2 ;;
        --if-none-match) if_none_match="$2"; shift 2 ;;
        --bucket) shift 2 ;;
        --query|--output|--region) shift 2 ;;
        --*) shift ;;
        *) if [ -z "$src" ]; then src="$1"; else dst="$1"; fi; shift ;;
    esac
done
case "$svc $op" in
    "ssm get-parameter")
        f="$SPOTRUNNER_LOCAL_PARAMS/$(enc "$name")"
        [ -f "$f" ] || { echo "ParameterNotFound: $name" >&2; exit 254; }
        cat "$f"; echo; rm -f -- "$f" ;;
    "ssm delete-parameter")
        rm -f -- "$SPOTRUNNER_LOCAL_PARAMS/$(enc "$name")" ;;
    "s3 cp")
        case "$src" in
            s3://*) key="${src#s3://*/}"; cp -- "$SPOTRUNNER_LOCAL_BUCKET/$key" "$dst" ;;
            *) echo "AccessDenied: uploads are s3api put-object --if-none-match" >&2; exit 1 ;;
        esac ;;
    "s3api put-object")
        [ "$if_none_match" = "*" ] || { echo "AccessDenied: new objects only" >&2; exit 254; }
        out="$SPOTRUNNER_LOCAL_BUCKET/$bucket_key"
        [ ! -e "$out" ] || { echo "PreconditionFailed: $bucket_key exists" >&2; exit 254; }
        mkdir -p -- "$(dirname -- "$out")"
        cp -- "$body" "$out" ;;
    *) echo "spotrunner local aws shim: unsupported: aws $svc $op" >&2; exit 2 ;;
esac
"#;

/// Where the scripts were written.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub bin_dir: PathBuf,
    pub bootstrap: PathBuf,
}

/// Write both scripts into `<state>/bin` (every start: the binary's copy wins).
pub fn install(state_dir: &Path) -> std::io::Result<Scripts> {
    let bin_dir = state_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    let bootstrap = bin_dir.join("bootstrap.sh");
    for (path, text) in [(&bootstrap, BOOTSTRAP_SH), (&bin_dir.join("aws"), AWS_SHIM)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(Scripts { bin_dir, bootstrap })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn aws(scripts: &Scripts, bucket: &Path, args: &[&str]) -> std::process::Output {
        Command::new(scripts.bin_dir.join("aws"))
            .args(args)
            .env("SPOTRUNNER_LOCAL_BUCKET", bucket)
            .env("SPOTRUNNER_LOCAL_PARAMS", bucket.join("params"))
            .output()
            .expect("shim runs")
    }

    #[test]
    fn the_cache_takes_new_objects_only_as_the_runner_role_does() {
        let tmp = tempfile::tempdir().unwrap();
        let scripts = install(&tmp.path().join("state")).unwrap();
        let bucket = tmp.path().join("bucket");
        let body = tmp.path().join("runner.tar.gz");
        std::fs::write(&body, "tarball").unwrap();
        let body = body.to_str().unwrap();
        let put = |extra: &[&str]| {
            let mut args = vec![
                "--region",
                "us-east-1",
                "s3api",
                "put-object",
                "--bucket",
                "b",
                "--key",
                "runner-cache/r.tar.gz",
                "--body",
                body,
            ];
            args.extend_from_slice(extra);
            aws(&scripts, &bucket, &args)
        };
        assert!(
            !put(&[]).status.success(),
            "an unconditional put is refused"
        );
        assert!(put(&["--if-none-match", "*"]).status.success());
        let again = put(&["--if-none-match", "*"]);
        assert!(
            !again.status.success(),
            "an existing object is never replaced"
        );
        assert!(String::from_utf8_lossy(&again.stderr).contains("PreconditionFailed"));
        let cp_up = aws(
            &scripts,
            &bucket,
            &["s3", "cp", body, "s3://b/runner-cache/x"],
        );
        assert!(!cp_up.status.success(), "s3 cp uploads are refused");
        let out = tmp.path().join("back");
        let cp_down = aws(
            &scripts,
            &bucket,
            &[
                "s3",
                "cp",
                "s3://b/runner-cache/r.tar.gz",
                out.to_str().unwrap(),
            ],
        );
        assert!(cp_down.status.success());
        assert_eq!(std::fs::read_to_string(out).unwrap(), "tarball");
    }
}
