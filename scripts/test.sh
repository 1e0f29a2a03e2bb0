#!/usr/bin/env bash
# The whole test suite: install what it needs, lint, unit + integration tests
# (moto, fake GitHub, GitHub's webhook examples), the fast suites again with the
# date a year ahead (libfaketime), one release build of the six Lambdas, the
# release webhook behind cargo lambda's runtime API, and the Terraform checks
# (fmt, validate, terraform test, checkov, apply + destroy of examples/local on
# moto with the real handlers run against the deployment).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== the fast suites again, a year ahead (libfaketime)"
scripts/test-moved-clock.sh
echo "== release Lambdas (one cargo lambda build for all six)"
scripts/package-lambdas.sh
echo "== release webhook smoke"
scripts/webhook-smoke.sh
echo "== terraform"
SPOTRUNNER_LAMBDA_ZIP_DIR="$PWD/target/lambda" \
  SPOTRUNNER_TF_DEPLOYED_TEST="cargo test -p spotrunner-e2e --test terraform_deployed -- --ignored" \
  scripts/terraform-check.sh
echo "== all tests passed"
