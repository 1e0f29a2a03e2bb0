#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine; idempotent and quick
# when all is present. Registries only: PyPI, npm, Debian, crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'install-test-deps: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }
apt_updated=""
apt_install() {
  if ! have apt-get; then say "WARNING: apt-get not found; cannot install $*"; return 1; fi
  if [ -z "$apt_updated" ]; then apt-get update -qq >/dev/null || true; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

have cargo || { say "ERROR: cargo is required (the machine's Rust toolchain)"; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true

PY=python3
have python3.11 && PY=python3.11
if ! have moto_server; then
  say "installing moto[server] 5.2.1 from PyPI"
  "$PY" -m pip install -q 'moto[server]==5.2.1'
  hash -r
fi
have moto_server || { say "ERROR: moto_server still not on PATH after install"; exit 1; }

if ! have cargo-lambda; then
  say "installing cargo-lambda from PyPI"
  "$PY" -m pip install -q 'cargo-lambda==1.9.2'
  hash -r
fi

if ! have node || ! have npm; then
  say "installing nodejs and npm from Debian"
  apt_install nodejs npm
fi
if [ ! -d testdata/npm/node_modules/@octokit/webhooks-examples ] || [ ! -d testdata/npm/node_modules/@octokit/webhooks-methods ]; then
  say "installing @octokit/webhooks-examples and @octokit/webhooks-methods (npm ci)"
  (cd testdata/npm && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

if [ ! -d scripts/iam/node_modules/@cloud-copilot/iam-simulate ]; then
  say "installing the IAM policy evaluator @cloud-copilot/iam-simulate (npm ci in scripts/iam)"
  (cd scripts/iam && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
python3 -c 'import boto3' 2>/dev/null || "$PY" -c 'import boto3' 2>/dev/null ||
  say "WARNING: python boto3 missing (it comes with moto[server]); the IAM matrix cannot read the deployment"

# scripts/test-moved-clock.sh runs the fast suites with the date a year ahead.
if ! have faketime; then
  say "installing faketime (libfaketime) from Debian"
  apt_install faketime || say "WARNING: faketime unavailable; the moved-clock run is skipped (and fails under CI)"
fi

if ! have shellcheck; then
  say "installing shellcheck from Debian"
  apt_install shellcheck || say "WARNING: shellcheck unavailable; shell lint is skipped"
fi

# The github-app create test drives the setup page in a real headless browser.
if ! have chromium || ! have chromedriver; then
  say "installing chromium and chromium-driver from Debian (headless browser test)"
  apt_install chromium chromium-driver || { say "ERROR: chromium/chromedriver could not be installed"; exit 1; }
  hash -r
fi

if ! have terraform; then
  say "WARNING: terraform not found: the Terraform checks will be SKIPPED"
fi
say "ok"
