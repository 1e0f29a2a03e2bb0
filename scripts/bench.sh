#!/usr/bin/env bash
# Criterion benchmarks. Usage: scripts/bench.sh [BENCH_NAME]
#   webhook_route      verify + parse + route of the largest queued example (crates/e2e)
#   create_runner_job  create-runner's own overhead per job, in-memory fakes (crates/core)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if [ $# -gt 0 ]; then
  for crate in crates/core crates/e2e; do
    if [ -f "$crate/benches/$1.rs" ]; then
      pkg=$(sed -n 's/^name = "\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1)
      exec cargo bench -p "$pkg" --bench "$1"
    fi
  done
  echo "no benchmark named $1 (see crates/core/benches, crates/e2e/benches)" >&2
  exit 2
else
  cargo bench -p spotrunner-core -p spotrunner-e2e
fi
