//! What a local "instance" runs: the project's own `scripts/runner/bootstrap.sh`
//! (embedded at build time) and an `aws` shim on its PATH that serves the few
//! calls the script makes from the state directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The runner bootstrap script, byte for byte as the SSM document runs it.
pub const BOOTSTRAP_SH: &str = include_str!("../../../scripts/runner/bootstrap.sh");

/// `aws ssm get-parameter|delete-parameter` on `$SPOTRUNNER_LOCAL_PARAMS`,
/// `aws s3 cp` on `$SPOTRUNNER_LOCAL_BUCKET`. Anything else fails loudly.
pub const AWS_SHIM: &str = r#"#!/bin/sh
# spotrunner local mode: the aws calls of bootstrap.sh, on local files.
set -eu
enc() { printf '%s' "$1" | sed -e 's/%/%25/g' -e 's|/|%2F|g'; }
while [ "${1:-}" = "--region" ]; do shift 2; done
svc="${1:-}"; op="${2:-}"; shift 2 || true
name=""; src=""; dst=""
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name="$2"; shift 2 ;;
        --query|--output|--region) shift 2 ;;
        --*) shift ;;
        *) if [ -z "$src" ]; then src="$1"; else dst="$1"; fi; shift ;;
    esac
done
case "$svc $op" in
    "ssm get-parameter")
        f="$SPOTRUNNER_LOCAL_PARAMS/$(enc "$name")"
        [ -f "$f" ] || { echo "ParameterNotFound: $name" >&2; exit 254; }
        cat "$f"; echo ;;
    "ssm delete-parameter")
        rm -f -- "$SPOTRUNNER_LOCAL_PARAMS/$(enc "$name")" ;;
    "s3 cp")
        case "$src" in
            s3://*) key="${src#s3://*/}"; cp -- "$SPOTRUNNER_LOCAL_BUCKET/$key" "$dst" ;;
            *) key="${dst#s3://*/}"; mkdir -p -- "$(dirname -- "$SPOTRUNNER_LOCAL_BUCKET/$key")"
               cp -- "$src" "$SPOTRUNNER_LOCAL_BUCKET/$key" ;;
        esac ;;
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
