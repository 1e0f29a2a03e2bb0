#!/usr/bin/env bash
# The benchmark suite (issue 12). Usage:
#   scripts/bench.sh [all|criterion|p1|p2-local|p2-moto|p3|util|start] [--quick] [CRITERION_BENCH]
#
#   criterion  criterion micro-benchmarks (release build):
#                webhook_route      verify + parse + route of the largest queued example (crates/e2e)
#                create_runner_job  create-runner's own overhead per job, in-memory fakes (crates/core)
#   p1         webhook cold start: scripts/bench/p1-cold-start.sh, when present
#   p2-local   burst on `spotrunner serve` (SQLite, local processes): 1000 queued deliveries +
#              1000 duplicates at max_runners 50 and 1000, and 30 one-second jobs at max_runners 3
#   p2-moto    the same burst through the real Lambda handlers on moto (max_runners 50 and 1000)
#   p3         API calls per job by service and operation (a moto burst at max_runners 1000)
#   util       capacity utilisation at saturation (the saturated local cases)
#   start      start time on `spotrunner serve`: webhook (queued at t0) -> job in_progress, 20 jobs
#              one at a time, runners asking the fake GitHub's dispatch for work; cold, then hot
#              (pool `hot` = {count: BENCH_HOT (default 2), owner: the jobs' organisation};
#              reported as skipped by a build without hot pools); prints a p50/p90/max table
#   all        p1, p2-local, p2-moto (P3 and utilisation come with them), start, then criterion
#   --quick    smaller cases (a smoke run; criterion is skipped)
#
# Results: one JSON line per case plus a human summary, in target/bench/results-<UTC>.{jsonl,txt};
# the path is printed at the end. The burst harness is crates/e2e/benches/burst (a bench target
# that `cargo test` does not build), run in a debug build. SPOTRUNNER_BIN overrides the
# `spotrunner` binary the local cases start (default: a debug build of this checkout).
# BENCH_DEADLINE_SECS (default 1800) bounds each case's wait for its jobs.
set -euo pipefail
cd "$(dirname "$0")/.."

what=all
quick=0
criterion_name=""
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    all|criterion|p1|p2-local|p2-moto|p3|util|start) what="$a" ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) criterion_name="$a" ;;
  esac
done
if [ -n "$criterion_name" ] && [ "$what" = all ]; then what=criterion; fi

target_dir="${CARGO_TARGET_DIR:-target}"
out_dir="$target_dir/bench"
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
results="${BENCH_RESULTS:-$out_dir/results-$stamp.jsonl}"
summary="${results%.jsonl}.txt"
deadline="${BENCH_DEADLINE_SECS:-1800}"
export BENCH_RESULTS="$results"

note() { printf '== %s\n' "$*" | tee -a "$summary" >&2; }

criterion() {
  scripts/install-test-deps.sh
  if [ -n "$criterion_name" ]; then
    for crate in crates/core crates/e2e; do
      if [ -f "$crate/benches/$criterion_name.rs" ]; then
        pkg=$(sed -n 's/^name = "\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1)
        cargo bench -p "$pkg" --bench "$criterion_name" | tee -a "$summary"
        return
      fi
    done
    echo "no benchmark named $criterion_name (see crates/core/benches, crates/e2e/benches)" >&2
    exit 2
  fi
  note "criterion (release build)"
  cargo bench -p spotrunner-core | tee -a "$summary"
  cargo bench -p spotrunner-e2e --bench webhook_route | tee -a "$summary"
}

p1() {
  if [ -x scripts/bench/p1-cold-start.sh ]; then
    note "P1 webhook cold start: scripts/bench/p1-cold-start.sh"
    if [ "$quick" = 1 ]; then scripts/bench/p1-cold-start.sh --quick; else scripts/bench/p1-cold-start.sh; fi
  else
    note "P1: scripts/bench/p1-cold-start.sh is not there yet: skipped"
  fi
}

# The `spotrunner` binary the local cases start: a copy, so that another
# build in the shared target directory cannot replace it mid-run.
spotrunner_bin() {
  if [ -n "${SPOTRUNNER_BIN:-}" ]; then echo "$SPOTRUNNER_BIN"; return; fi
  cargo build -q -p spotrunner >&2
  mkdir -p "$out_dir/bin"
  cp "$target_dir/debug/spotrunner" "$out_dir/bin/spotrunner-$stamp"
  echo "$out_dir/bin/spotrunner-$stamp"
}

# The burst harness (crates/e2e/benches/burst, debug build), copied like the CLI.
burst_bin=""
burst() { # backend, then the harness's flags
  local backend=$1; shift
  if [ -z "$burst_bin" ]; then
    local exe
    exe=$(cargo test -p spotrunner-e2e --bench burst --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
    [ -x "$exe" ] || { echo "could not build the burst harness" >&2; exit 1; }
    mkdir -p "$out_dir/bin"
    burst_bin="$out_dir/bin/burst-$stamp"
    cp "$exe" "$burst_bin"
  fi
  note "burst $backend $*"
  "$burst_bin" "$backend" --deadline-secs "$deadline" --out "$results" "$@" | grep -v '^fault proxy' || true
}

p2_local() {
  scripts/install-test-deps.sh >/dev/null
  SPOTRUNNER_BIN=$(spotrunner_bin)
  export SPOTRUNNER_BIN
  if [ "$quick" = 1 ]; then
    burst local --jobs 100 --max-runners 10 --name local-100x-max10
    burst local --jobs 100 --max-runners 100 --name local-100x-max100
    burst local --jobs 10 --max-runners 3 --run-secs 1 --name local-10x1s-max3
  else
    burst local --jobs 1000 --max-runners 50 --name local-1000x-max50
    burst local --jobs 1000 --max-runners 1000 --name local-1000x-max1000
    burst local --jobs 30 --max-runners 3 --run-secs 1 --name local-30x1s-max3
  fi
}

p2_moto() {
  scripts/install-test-deps.sh >/dev/null
  if [ "$quick" = 1 ]; then
    burst moto --jobs 50 --max-runners 10 --name moto-50x-max10
    burst moto --jobs 50 --max-runners 50 --name moto-50x-max50
  else
    burst moto --jobs 1000 --max-runners 50 --name moto-1000x-max50
    burst moto --jobs 1000 --max-runners 1000 --name moto-1000x-max1000
  fi
}

p3() {
  scripts/install-test-deps.sh >/dev/null
  if [ "$quick" = 1 ]; then
    burst moto --jobs 50 --max-runners 50 --name moto-50x-max50
  else
    burst moto --jobs 1000 --max-runners 1000 --name moto-1000x-max1000
  fi
}

util() {
  scripts/install-test-deps.sh >/dev/null
  SPOTRUNNER_BIN=$(spotrunner_bin)
  export SPOTRUNNER_BIN
  if [ "$quick" = 1 ]; then
    burst local --jobs 100 --max-runners 10 --name local-100x-max10
  else
    burst local --jobs 1000 --max-runners 50 --name local-1000x-max50
  fi
  burst local --jobs 30 --max-runners 3 --run-secs 1 --name local-30x1s-max3
}

start_time() {
  scripts/install-test-deps.sh >/dev/null
  SPOTRUNNER_BIN=$(spotrunner_bin)
  export SPOTRUNNER_BIN
  local n=20 hot="${BENCH_HOT:-2}"
  if [ "$quick" = 1 ]; then n=5; fi
  burst start --jobs "$n" --hot 0 --name start-cold
  if [ "$hot" -gt 0 ]; then
    burst start --jobs "$n" --hot "$hot" --name "start-hot$hot"
  fi
  # The table comes with the summary at the end (summary.py).
}

{
  echo "spotrunner benchmarks, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "command: scripts/bench.sh $*"
} >>"$summary"
case "$what" in
  criterion) criterion ;;
  p1) p1 ;;
  p2-local) p2_local ;;
  p2-moto) p2_moto ;;
  p3) p3 ;;
  util) util ;;
  start) start_time ;;
  all)
    p1
    p2_local
    p2_moto
    start_time
    if [ "$quick" = 0 ]; then criterion; fi
    ;;
esac
if [ -s "$results" ]; then
  python3 scripts/bench/summary.py "$results" | tee -a "$summary"
fi
echo "results: $results"
echo "summary: $summary"
