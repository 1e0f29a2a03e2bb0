#!/usr/bin/env bash
# P1: the webhook Lambda's cold start (target: exec -> ready <= 8 ms).
#
#   scripts/bench/p1-cold-start.sh [--zip PATH] [--runs N] [--warm N] [--label L] [--out FILE] [--baseline]
#
# Runs the release webhook binary (the bootstrap in target/lambda/webhook/bootstrap.zip
# from scripts/package-lambdas.sh, built if absent; --zip takes another) under a
# minimal Lambda Runtime API (scripts/bench/p1_runtime_api.py) against moto, with
# the environment Terraform hands the function (config + secret in SSM, jobs queue,
# ledger table, secret parameter names), and a GitHub workflow_job example
# (@octokit/webhooks-examples) signed with the webhook secret as a Function URL
# event. Per cold start: exec -> ready (the first `next` request), the first
# event's latency, the median of WARM (50) warm events, peak RSS (VmHWM); each
# answer must be 202 queued, no log line WARN or worse, one EMF line per event.
# Results: JSON lines appended to FILE (default target/bench/p1-cold-start.jsonl),
# whose path is printed at the end; the last line is the summary (medians).
# --baseline: the binary predates the EMF metrics (do not require their lines).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=python3; command -v python3.11 >/dev/null && PY=python3.11
# shellcheck source=scripts/lib/smoke_moto.sh
. scripts/lib/smoke_moto.sh

zip=${SPOTRUNNER_LAMBDA_ZIP_DIR:-target/lambda}/webhook/bootstrap.zip
runs=5
warm=50
label=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out=target/bench/p1-cold-start.jsonl
baseline=()
while [ $# -gt 0 ]; do
  case "$1" in
    --zip) shift; zip="$1" ;;
    --runs) shift; runs="$1" ;;
    --warm) shift; warm="$1" ;;
    --label) shift; label="$1" ;;
    --out) shift; out="$1" ;;
    --baseline) baseline=(--baseline) ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done


if [ ! -f "$zip" ]; then
  echo "== no $zip: building the Lambdas (scripts/package-lambdas.sh)"
  scripts/package-lambdas.sh
fi
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' "$zip" "$work"
chmod +x "$work/bootstrap"

secret="p1-webhook-secret-0123456789abcdef"
smoke_moto_setup "$secret"
"$PY" - "$work/queued.json" <<'PYEOF'
import json, sys
idx = json.load(open("testdata/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"))
ex = next(x for e in idx if e["name"] == "workflow_job" for x in e["examples"]
          if x["action"] == "queued" and "k8s" in x["workflow_job"]["labels"])
json.dump(ex, open(sys.argv[1], "w"))
PYEOF

mkdir -p "$(dirname "$out")" "$work/logs"
# What Terraform gives the webhook (terraform/lambda.tf), plus the local endpoint.
"$PY" scripts/bench/p1_runtime_api.py --bin "$work/bootstrap" --example "$work/queued.json" \
  --secret "$secret" --runs "$runs" --warm "$warm" --label "$label" --logs "$work/logs" --out "$out" "${baseline[@]}" \
  --env AWS_ENDPOINT_URL="$endpoint" --env AWS_REGION=us-east-1 \
  --env AWS_ACCESS_KEY_ID=testing --env AWS_SECRET_ACCESS_KEY=testing \
  --env AWS_LAMBDA_FUNCTION_NAME=p1-webhook --env AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256 \
  --env AWS_LAMBDA_FUNCTION_VERSION='$LATEST' --env RUST_LOG=info \
  --env SPOTRUNNER_CONFIG_PARAMETER=/smoke/config --env SPOTRUNNER_CONFIG_SHA256=p1 \
  --env SPOTRUNNER_JOBS_QUEUE_URL="$queue_url" --env SPOTRUNNER_LEDGER_TABLE=smoke-ledger \
  --env SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS=/smoke/webhook-secret ||
  { status=$?; tail -5 "$work/logs/run0.log" >&2; echo "p1: FAILED (results in $out)" >&2; exit $status; }
echo "p1 results: $out"
