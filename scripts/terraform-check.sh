#!/usr/bin/env bash
# The Terraform checks: fmt, offline init + validate (module and examples),
# `terraform test` (mock provider), checkov, then apply + destroy of
# terraform/examples/local against moto_server on 127.0.0.1.
#
#   scripts/terraform-check.sh [--placeholder-zips] [--skip-apply] [--skip-checkov]
#
#   --placeholder-zips  for Lambdas whose package does not exist yet, write a tiny
#                       placeholder bootstrap.zip (moto never invokes a Lambda);
#                       the ones that exist are built for real.
#   --skip-apply        stop after the static checks (no moto).
#   --skip-checkov      do not run checkov.
#   --skip-config-test  after the apply, do not run the Rust check of the deployed
#                       configuration (cargo test -p spotrunner-e2e --test terraform_config).
#
# After the apply, always: the IAM effective-permission matrix (scripts/iam-matrix.sh)
# over every role as deployed; its failure fails this script (after the destroy).
#
# Environment:
#   SPOTRUNNER_TF_DEPLOYED_TEST  a command run after the apply, before the destroy,
#                                with MOTO_ENDPOINT, AWS_* (fake), SPOTRUNNER_TF_OUTPUTS
#                                (path of `terraform output -json`) exported; e.g.
#                                `cargo test -p spotrunner-e2e --test terraform_deployed`.
#                                Its failure fails this script (after the destroy).
#   SPOTRUNNER_LAMBDA_ZIP_DIR    use these zips instead of building (DIR/<fn>/bootstrap.zip).
#
# Without terraform on PATH the whole check is SKIPPED (exit 0) with a loud message.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

say() { printf 'terraform-check: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

placeholder=0
skip_apply=0
skip_checkov=0
skip_config_test=0
for arg in "$@"; do
  case "$arg" in
    --placeholder-zips) placeholder=1 ;;
    --skip-apply) skip_apply=1 ;;
    --skip-checkov) skip_checkov=1 ;;
    --skip-config-test) skip_config_test=1 ;;
    -h | --help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (see --help)" ;;
  esac
done

if ! command -v terraform >/dev/null 2>&1; then
  cat >&2 <<'EOF'
##############################################################################
##  SKIPPED: terraform is not installed. The Terraform module checks (fmt,   ##
##  validate, terraform test, checkov, apply/destroy against moto) did NOT   ##
##  run. Install terraform >= 1.9 to run them.                              ##
##############################################################################
EOF
  exit 0
fi

export TF_CLI_CONFIG_FILE="$ROOT/terraform/terraformrc"
export TF_IN_AUTOMATION=1
export TF_INPUT=0
export CHECKPOINT_DISABLE=1
TF_DIR="$ROOT/terraform"
FUNCTIONS=(webhook create-runner stop-runner dlq-mover janitor recovery)

step() { printf '\n== %s\n' "$*" >&2; }

# --- fmt, init, validate -----------------------------------------------------
step "terraform fmt -check -recursive"
terraform -chdir="$TF_DIR" fmt -check -recursive -diff || die "terraform fmt: run 'terraform fmt -recursive terraform/'"

for dir in "$TF_DIR" "$TF_DIR/examples/basic" "$TF_DIR/examples/local"; do
  rel="${dir#"$ROOT"/}"
  step "init (offline, filesystem mirror) + validate: $rel"
  terraform -chdir="$dir" init -backend=false -input=false -no-color >/dev/null ||
    die "terraform init in $rel (provider mirror: /opt/tf-plugins, CLI config terraform/terraformrc)"
  terraform -chdir="$dir" validate -no-color || die "terraform validate in $rel"
done

# --- terraform test (mock provider) ------------------------------------------
step "terraform test (mock_provider aws)"
terraform -chdir="$TF_DIR" test -no-color || die "terraform test"

# --- checkov -----------------------------------------------------------------
CHECKOV_VERSION="3.3.30"
if [ "$skip_checkov" = 0 ]; then
  step "checkov $CHECKOV_VERSION over terraform/"
  venv="$ROOT/.cache/checkov-venv"
  if [ ! -x "$venv/bin/checkov" ]; then
    say "installing checkov $CHECKOV_VERSION into $venv (PyPI)"
    py=python3
    command -v python3.11 >/dev/null 2>&1 && py=python3.11
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q "checkov==$CHECKOV_VERSION"
  fi
  # Skips are inline (#checkov:skip=ID:reason) and listed in terraform/README.md.
  "$venv/bin/checkov" -d "$TF_DIR" --framework terraform --quiet --compact \
    --skip-path '\.terraform' --download-external-modules false --skip-download ||
    die "checkov reported failed checks (fix them, or skip inline with a reason and list it in terraform/README.md)"
  say "checkov: 0 failed checks"
fi

[ "$skip_apply" = 1 ] && { say "OK (static checks; apply skipped)"; exit 0; }

# --- Lambda zips ------------------------------------------------------------
zip_dir="${SPOTRUNNER_LAMBDA_ZIP_DIR:-}"
if [ -z "$zip_dir" ]; then
  step "Lambda zips (scripts/package-lambdas.sh)"
  zip_dir="$ROOT/target/lambda"
  pkg_args=()
  [ "$placeholder" = 1 ] && pkg_args=(--allow-missing)
  scripts/package-lambdas.sh "${pkg_args[@]}" --out "$zip_dir"
fi
for fn in "${FUNCTIONS[@]}"; do
  zip="$zip_dir/$fn/bootstrap.zip"
  [ -f "$zip" ] && continue
  [ "$placeholder" = 1 ] || die "missing $zip (build it, or pass --placeholder-zips)"
  say "PLACEHOLDER zip for $fn (its package does not exist yet; moto never invokes it)"
  mkdir -p "$zip_dir/$fn"
  python3 - "$zip" <<'EOF'
import sys, zipfile
info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
info.external_attr = 0o755 << 16
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr(info, "#!/bin/sh\necho 'spotrunner placeholder: this Lambda is not built yet' >&2\nexit 1\n")
EOF
done

# --- moto_server -------------------------------------------------------------
command -v moto_server >/dev/null 2>&1 || die "moto_server not found: run scripts/install-test-deps.sh"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
moto_log="$ROOT/target/tf-moto.log"
mkdir -p "$ROOT/target"
step "moto_server on 127.0.0.1:$port (log: ${moto_log#"$ROOT"/})"
MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 &
moto_pid=$!
LOCAL_DIR="$TF_DIR/examples/local"
state_dir="$(mktemp -d)"
cleanup() {
  kill "$moto_pid" 2>/dev/null || true
  wait "$moto_pid" 2>/dev/null || true
  rm -rf "$state_dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
  kill -0 "$moto_pid" 2>/dev/null || die "moto_server exited (see $moto_log)"
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export MOTO_ENDPOINT="http://127.0.0.1:$port"
tf_vars=(-var "moto_port=$port" -var "lambda_zip_dir=$zip_dir")
state=(-state="$state_dir/terraform.tfstate")

step "apply examples/local"
t0=$(date +%s.%N)
terraform -chdir="$LOCAL_DIR" apply -auto-approve -no-color -input=false "${state[@]}" "${tf_vars[@]}" >"$ROOT/target/tf-apply.log" 2>&1 || {
  tail -n 60 "$ROOT/target/tf-apply.log" >&2
  die "apply of examples/local against moto (full log: target/tf-apply.log)"
}
t1=$(date +%s.%N)
apply_secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
say "apply: $(grep -o 'Apply complete!.*' "$ROOT/target/tf-apply.log" || true) in ${apply_secs} s"

outputs="$ROOT/target/tf-local-outputs.json"
terraform -chdir="$LOCAL_DIR" output -json "${state[@]}" >"$outputs"
say "outputs: ${outputs#"$ROOT"/}"

# The plan after apply must be empty: the emulator round-trips what we set.
step "plan after apply (expect no changes)"
set +e
terraform -chdir="$LOCAL_DIR" plan -detailed-exitcode -no-color -input=false "${state[@]}" "${tf_vars[@]}" >"$ROOT/target/tf-replan.log" 2>&1
replan=$?
set -e
case "$replan" in
  0) say "no changes" ;;
  2) say "WARNING: the plan after apply is not empty (emulator drift; see target/tf-replan.log)" ;;
  *) tail -n 40 "$ROOT/target/tf-replan.log" >&2; die "plan after apply" ;;
esac

export SPOTRUNNER_TF_OUTPUTS="$outputs"
hook_status=0
run_hook() { # NAME COMMAND
  step "$1: $2"
  set +e
  bash -c "$2"
  local rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    say "$1 FAILED (exit $rc); destroying anyway"
    hook_status=$rc
  fi
}
# The effective permissions of every role as deployed (inline and attached
# policies read back from moto's IAM), through an IAM policy evaluator.
run_hook "IAM effective-permission matrix" \
  "scripts/iam-matrix.sh --endpoint '$MOTO_ENDPOINT' --outputs '$outputs' --policies '$ROOT/target/iam-policies.json' --log '$ROOT/target/iam-matrix.log'"

# The Lambdas' own parser and validation over the deployed document (SSM on moto).
if [ "$skip_config_test" = 0 ]; then
  run_hook "deployed configuration" "cargo test -q -p spotrunner-e2e --test terraform_config"
fi
if [ -n "${SPOTRUNNER_TF_DEPLOYED_TEST:-}" ]; then
  run_hook "deployed test (SPOTRUNNER_TF_DEPLOYED_TEST)" "$SPOTRUNNER_TF_DEPLOYED_TEST"
fi

step "destroy examples/local"
t0=$(date +%s.%N)
terraform -chdir="$LOCAL_DIR" destroy -auto-approve -no-color -input=false "${state[@]}" "${tf_vars[@]}" >"$ROOT/target/tf-destroy.log" 2>&1 || {
  tail -n 60 "$ROOT/target/tf-destroy.log" >&2
  die "destroy of examples/local against moto (full log: target/tf-destroy.log)"
}
t1=$(date +%s.%N)
destroy_secs=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
say "destroy: $(grep -o 'Destroy complete!.*' "$ROOT/target/tf-destroy.log" || true) in ${destroy_secs} s"

[ "$hook_status" = 0 ] || die "a test against the deployed example failed (exit $hook_status; see above)"
checkov_note="checkov"
[ "$skip_checkov" = 1 ] && checkov_note="checkov SKIPPED"
say "OK: fmt, validate, terraform test, $checkov_note, apply (${apply_secs} s), IAM matrix and destroy (${destroy_secs} s) of examples/local against moto"
