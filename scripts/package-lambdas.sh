#!/usr/bin/env bash
# Builds the six spotrunner Lambdas as zips for Terraform, in ONE
# `cargo lambda build --release --output-format zip` invocation, and reports
# each zip's size.
#
#   scripts/package-lambdas.sh [--arm64] [--allow-missing] [--out DIR]
#
# Output: DIR/<binary>/bootstrap.zip (DIR defaults to target/lambda), e.g.
# target/lambda/webhook/bootstrap.zip — the layout the Terraform module's
# `lambda_zip_dir` variable expects.
#
#   --arm64          build for aarch64-unknown-linux-gnu (Graviton); needs
#                    `rustup target add aarch64-unknown-linux-gnu`. Default x86_64.
#   --allow-missing  build the Lambda packages that exist in the workspace and
#                    only warn about the missing ones (default: fail, listing them).
#   --out DIR        where the zips go (default: target/lambda).
#
# Honours CARGO_TARGET_DIR (a shared target dir saves a full release build).
# Needs `cargo lambda` (scripts/install-test-deps.sh installs it from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'package-lambdas: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# package name -> binary name (= the directory under the output dir).
PACKAGES=(
  spotrunner-webhook:webhook
  spotrunner-create-runner:create-runner
  spotrunner-stop-runner:stop-runner
  spotrunner-dlq-mover:dlq-mover
  spotrunner-janitor:janitor
  spotrunner-recovery:recovery
)

arch="x86_64"
allow_missing=0
out_dir="target/lambda"
while [ $# -gt 0 ]; do
  case "$1" in
    --arm64) arch="arm64" ;;
    --x86-64 | --x86_64) arch="x86_64" ;;
    --allow-missing) allow_missing=1 ;;
    --out) shift; [ $# -gt 0 ] || die "--out needs a directory"; out_dir="$1" ;;
    --out=*) out_dir="${1#--out=}" ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

cargo lambda --version >/dev/null 2>&1 ||
  die "cargo-lambda is not installed: run scripts/install-test-deps.sh (pip install cargo-lambda)"

target_args=()
if [ "$arch" = "arm64" ]; then
  if ! rustup target list --installed 2>/dev/null | grep -qx 'aarch64-unknown-linux-gnu'; then
    die "--arm64 needs the Rust target aarch64-unknown-linux-gnu: rustup target add aarch64-unknown-linux-gnu"
  fi
  target_args=(--arm64)
else
  target_args=(--x86-64)
fi

# Which of the six packages does the workspace hold?
workspace_packages="$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null ||
  cargo metadata --no-deps --format-version 1)"
present=()
missing=()
for entry in "${PACKAGES[@]}"; do
  pkg="${entry%%:*}"
  if grep -q "\"name\":\"$pkg\"" <<<"$workspace_packages"; then
    present+=("$entry")
  else
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$allow_missing" = 1 ]; then
    say "WARNING: not in the workspace (skipped, --allow-missing): ${missing[*]}"
  else
    die "Lambda packages missing from the workspace: ${missing[*]} (use --allow-missing to build the others)"
  fi
fi
[ ${#present[@]} -gt 0 ] || die "none of the Lambda packages exist"

pkg_args=()
for entry in "${present[@]}"; do
  pkg_args+=(-p "${entry%%:*}")
done

mkdir -p "$out_dir"
say "building ${#present[@]} Lambda(s) for $arch in one invocation (CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target})"
start=$(date +%s)
cargo lambda build --release --output-format zip "${target_args[@]}" \
  --lambda-dir "$out_dir" "${pkg_args[@]}"
say "built in $(($(date +%s) - start)) s"

status=0
printf '%-16s %12s  %s\n' lambda bytes zip
for entry in "${present[@]}"; do
  bin="${entry#*:}"
  zip="$out_dir/$bin/bootstrap.zip"
  if [ -f "$zip" ]; then
    size=$(stat -c %s "$zip")
    printf '%-16s %12s  %s (%s KiB)\n' "$bin" "$size" "$zip" "$((size / 1024))"
  else
    say "ERROR: expected $zip was not produced"
    status=1
  fi
done
exit $status
