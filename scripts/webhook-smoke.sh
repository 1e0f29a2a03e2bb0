#!/usr/bin/env bash
# Runs the release `webhook` Lambda (from scripts/package-lambdas.sh) behind
# `cargo lambda watch`'s runtime API and Function URL router, with a
# signed queued example from @octokit/webhooks-examples: expects 202 and the job
# message on an SQS queue in moto. Also reports the stripped binary size and the
# time from exec to ready (cold start, config + secret read from SSM in moto).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=python3; command -v python3.11 >/dev/null && PY=python3.11
# shellcheck source=scripts/lib/smoke_moto.sh
. scripts/lib/smoke_moto.sh

secret="smoke-webhook-secret-0123456789abcdef"
smoke_moto_setup "$secret"

node -e '
const idx = require("./testdata/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json");
const ex = idx.find(e => e.name === "workflow_job").examples.find(x => x.action === "queued" && x.workflow_job.labels.includes("k8s"));
process.stdout.write(JSON.stringify(ex));' >"$work/queued.json"
job_id=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["workflow_job"]["id"])' "$work/queued.json")

# The release binary from scripts/package-lambdas.sh (one release build for all
# six Lambdas; built here if absent).
zip_dir=${SPOTRUNNER_LAMBDA_ZIP_DIR:-target/lambda}
if [ ! -f "$zip_dir/webhook/bootstrap.zip" ]; then
  echo "== no $zip_dir/webhook/bootstrap.zip: building the Lambdas"
  scripts/package-lambdas.sh
fi
"$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("bootstrap", sys.argv[2])' \
  "$zip_dir/webhook/bootstrap.zip" "$work"
bin="$work/bootstrap"
chmod +x "$bin"
size=$(stat -c %s "$bin")

# cargo lambda's runtime API and Function URL router (a function started by hand
# serves the name `_`); the binary is started by hand (as Lambda would), so the time from exec to its "webhook ready" line is
# the cold start (config + secret read from SSM in moto).
api_port=$(free_port)
cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P "$api_port" -q >"$work/api.log" 2>&1 &
pids+=($!)
wait_port "$api_port" 120
start=$(date +%s%N)
env AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  SPOTRUNNER_CONFIG_PARAMETER=/smoke/config SPOTRUNNER_JOBS_QUEUE_URL="$queue_url" \
  SPOTRUNNER_LEDGER_TABLE=smoke-ledger SPOTRUNNER_WEBHOOK_SECRET_PARAMETERS=/smoke/webhook-secret \
  AWS_LAMBDA_FUNCTION_NAME=webhook AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 AWS_LAMBDA_FUNCTION_VERSION=1 \
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$api_port/.rt" "$bin" >"$work/cold.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 400); do grep -q 'webhook ready' "$work/cold.log" && break; sleep 0.005; done
ready=$(date +%s%N)
grep -q 'webhook ready' "$work/cold.log" || { echo "FAIL: binary never became ready:"; cat "$work/cold.log"; exit 1; }

result=$("$PY" scripts/lib/smoke_aws.py post "http://127.0.0.1:$api_port/lambda-url/_/" "$secret" "$work/queued.json")
echo "response: $result"
messages=$("$PY" scripts/lib/smoke_aws.py receive "$endpoint" "$queue_url")
ok=1
case "$result" in "202 "*"\"queued\":true"*) ;; *) echo "FAIL: expected 202 queued" >&2; ok=0 ;; esac
if ! grep -q "\"job_id\":$job_id" <<<"$messages"; then echo "FAIL: job $job_id not on the queue: $messages" >&2; ok=0; fi
# The environment is Terraform's (terraform/lambda.tf): a correct start warns about nothing.
if grep -q '"level":"\(WARN\|ERROR\)"' "$work/cold.log"; then echo "FAIL: WARN/ERROR logged:" >&2; grep '"level":"\(WARN\|ERROR\)"' "$work/cold.log" >&2; ok=0; fi
if [ "$ok" != 1 ]; then sed 's/^/lambda: /' "$work/cold.log" "$work/api.log" | tail -40 >&2; exit 1; fi
echo "webhook smoke: 202 and job $job_id on the queue"
echo "release binary: $size bytes (stripped), exec to ready: $(( (ready - start) / 1000000 )) ms"
echo "1 passed, 0 failed"
