#!/usr/bin/env bash
# Criterion benchmarks. Usage: scripts/bench.sh [BENCH_NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if [ $# -gt 0 ]; then
  cargo bench -p spotrunner-e2e --bench "$1"
else
  cargo bench -p spotrunner-e2e
fi
