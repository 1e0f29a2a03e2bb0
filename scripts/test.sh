#!/usr/bin/env bash
# The whole test suite: install what it needs, lint, unit + integration tests
# (moto, fake GitHub, GitHub's webhook examples), then the release webhook binary
# under `cargo lambda watch`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace --no-fail-fast
echo "== release webhook under cargo lambda watch"
scripts/webhook-smoke.sh
