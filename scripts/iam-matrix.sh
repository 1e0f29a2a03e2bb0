#!/usr/bin/env bash
# The IAM effective-permission matrix (scripts/iam/matrix.mjs) over the roles of
# a deployed spotrunner module.
#
#   scripts/iam-matrix.sh --endpoint URL --outputs FILE [--policies OUT]
#       read every role of the deployment from the IAM API at URL (moto in
#       scripts/terraform-check.sh), with the Terraform outputs of
#       examples/local in FILE; write the policies to OUT (default
#       target/iam-policies.json), then evaluate the matrix.
#   scripts/iam-matrix.sh [--policies FILE]
#       evaluate the matrix over policies dumped before (default
#       target/iam-policies.json): iterate on the matrix without an apply.
#   --verbose   also print context keys the evaluator ignored.
#   --log FILE  write the full output to FILE; print only the per-role totals,
#               the regression and identity results (and every FAIL line).
#
# Installs the pinned evaluator (scripts/iam/package-lock.json) with `npm ci`
# when scripts/iam/node_modules is missing. Exit 1 on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'iam-matrix: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

endpoint=""
outputs=""
policies="target/iam-policies.json"
matrix_args=()
log=""
while [ $# -gt 0 ]; do
  case "$1" in
    --endpoint) shift; endpoint="${1:?--endpoint needs a URL}" ;;
    --outputs) shift; outputs="${1:?--outputs needs a file}" ;;
    --policies) shift; policies="${1:?--policies needs a file}" ;;
    --verbose) matrix_args+=(--verbose) ;;
    --log) shift; log="${1:?--log needs a file}" ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

command -v node >/dev/null 2>&1 || die "node not found: run scripts/install-test-deps.sh"
if [ ! -d scripts/iam/node_modules/@cloud-copilot/iam-simulate ]; then
  say "installing the IAM evaluator (npm ci in scripts/iam)"
  (cd scripts/iam && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || die "npm ci in scripts/iam"
fi

if [ -n "$endpoint" ] || [ -n "$outputs" ]; then
  if [ -z "$endpoint" ] || [ -z "$outputs" ]; then die "--endpoint and --outputs go together"; fi
  mkdir -p "$(dirname "$policies")"
  py=""
  for candidate in python3 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import boto3' 2>/dev/null; then
      py="$candidate"
      break
    fi
  done
  [ -n "$py" ] || die "no python with boto3 (it comes with moto[server]: scripts/install-test-deps.sh)"
  "$py" scripts/iam/dump_roles.py --endpoint "$endpoint" --outputs "$outputs" --out "$policies" ||
    die "could not read the deployment's roles from $endpoint"
fi
[ -f "$policies" ] || die "no $policies: run scripts/terraform-check.sh (or pass --endpoint and --outputs)"
if [ -z "$log" ]; then
  exec node scripts/iam/matrix.mjs "$policies" ${matrix_args[@]+"${matrix_args[@]}"}
fi
set +e
node scripts/iam/matrix.mjs "$policies" ${matrix_args[@]+"${matrix_args[@]}"} >"$log" 2>&1
rc=$?
set -e
# Totals, regression and identity verdicts, every FAIL with its reason.
awk '/^(-- |PASS  caught|PASS  no pattern|== IAM matrix)/ { print; f = 0; next }
     /^FAIL/ { print; f = 1; next }
     /^        / && f { print; next }
     { f = 0 }' "$log"
[ "$rc" = 0 ] || say "FAILED (exit $rc); every line: $log"
exit "$rc"
