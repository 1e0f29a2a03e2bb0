#!/usr/bin/env bash
# Self-contained tests for scripts/runner/bootstrap.sh.
#
# Every test builds a temp dir with fake `aws`, `shutdown` and `curl` on PATH
# (small bash scripts that append their argv to calls.log), a fake S3 "bucket"
# directory holding a real runner tar.gz with a fake run.sh, and a fake SSM
# parameter store directory. Output: one `ok NAME` / `FAIL NAME: why` line per
# test, then exactly `N passed, N failed`. Exit status is non-zero if any test
# failed.
#
# Usage: bash scripts/tests/test_bootstrap.sh [NAME_FILTER]

set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SCRIPT="${BOOTSTRAP_SCRIPT:-$ROOT/scripts/runner/bootstrap.sh}"
DOC="$ROOT/scripts/runner/ssm-document.yaml"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
FILTER="${1:-}"

JIT_VALUE='eyJhbGciOiJSUzI1NiJ9.SECRET-JIT-CONFIG-7f3a9c1e0b'
PARAM='/spotrunner/jit/ci-linux-42-1'
RUNNER_NAME='ci-linux-42-1'
BUCKET='spotrunner-artifacts'
VERSION='2.317.0'
MAX_RUN='3601' # -> shutdown -h +61

PASSED=0
FAILED=0
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/test_bootstrap.XXXXXX")"
trap 'rm -rf -- "$SCRATCH"' EXIT

if command -v timeout >/dev/null 2>&1; then
    TIMEOUT=(timeout 60)
else
    TIMEOUT=()
fi

# --- fixtures ------------------------------------------------------------------

# make_fakes: populate $T (the current test's dir) with bin/, s3/, params/, home/.
make_fakes() {
    mkdir -p "$T/bin" "$T/s3/$BUCKET/runner-cache" "$T/params" "$T/home" "$T/tarsrc"
    : >"$T/calls.log"

    cat >"$T/bin/aws" <<'EOF'
#!/usr/bin/env bash
# Fake aws CLI: ssm get-parameter/delete-parameter from $FAKE_PARAMS,
# s3 cp to/from $FAKE_S3/<bucket>/<key>.
{ printf 'aws'; printf ' %s' "$@"; printf '\n'; } >>"$FAKE_LOG"
args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --region) shift 2 ;;
        --only-show-errors | --no-progress) shift ;;
        *) args+=("$1"); shift ;;
    esac
done
param_file() { printf '%s/%s' "$FAKE_PARAMS" "${1//\//_}"; }
s3_path() { local u="${1#s3://}"; printf '%s/%s' "$FAKE_S3" "$u"; }
name=""
if [[ "${args[0]}" == ssm ]]; then
    for ((i = 2; i < ${#args[@]}; i++)); do
        [[ "${args[i]}" == "--name" ]] && name="${args[i + 1]}"
    done
    f="$(param_file "$name")"
    if [[ ! -f "$f" ]]; then
        echo "An error occurred (ParameterNotFound) when calling the operation: Parameter $name not found." >&2
        exit 254
    fi
fi
case "${args[0]} ${args[1]}" in
    "ssm get-parameter") cat "$f" ;;
    "s3api put-object")
        # Like S3 with the runner role's policy: new objects only.
        bucket="" key="" body="" if_none_match=""
        for ((i = 2; i < ${#args[@]}; i++)); do
            case "${args[i]}" in
                --bucket) bucket="${args[i + 1]}" ;;
                --key) key="${args[i + 1]}" ;;
                --body) body="${args[i + 1]}" ;;
                --if-none-match) if_none_match="${args[i + 1]}" ;;
            esac
        done
        if [[ -n "${FAKE_S3_READONLY:-}" || "$if_none_match" != "*" ]]; then
            echo "An error occurred (AccessDenied) when calling the PutObject operation" >&2
            exit 254
        fi
        p="$FAKE_S3/$bucket/$key"
        if [[ -e "$p" ]]; then
            echo "An error occurred (PreconditionFailed) when calling the PutObject operation" >&2
            exit 254
        fi
        mkdir -p "$(dirname "$p")"
        cp "$body" "$p"
        ;;
    "ssm delete-parameter") rm -f "$f" ;;
    "s3 cp")
        src="${args[2]}" dst="${args[3]}"
        if [[ "$src" == s3://* ]]; then
            p="$(s3_path "$src")"
            if [[ ! -f "$p" ]]; then
                echo "fatal error: An error occurred (404) when calling the HeadObject operation: Key not found" >&2
                exit 1
            fi
            cp "$p" "$dst"
        else
            # The runner role may not overwrite objects: uploads go through
            # s3api put-object --if-none-match.
            echo "upload failed: AccessDenied" >&2
            exit 1
        fi
        ;;
    *) echo "fake aws: unsupported: ${args[*]}" >&2; exit 2 ;;
esac
EOF

    cat >"$T/bin/shutdown" <<'EOF'
#!/usr/bin/env bash
{ printf 'shutdown'; printf ' %s' "$@"; printf '\n'; } >>"$FAKE_LOG"
EOF

    cat >"$T/bin/curl" <<'EOF'
#!/usr/bin/env bash
{ printf 'curl'; printf ' %s' "$@"; printf '\n'; } >>"$FAKE_LOG"
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -o) out="$2"; shift 2 ;;
        *) shift ;;
    esac
done
[[ -n "${FAKE_CURL_FAIL:-}" ]] && { echo "curl: (22) 404" >&2; exit 22; }
cp "$FAKE_TARBALL" "$out"
EOF

    # The fake actions runner, shipped inside a real tar.gz.
    cat >"$T/tarsrc/run.sh" <<'EOF'
#!/usr/bin/env bash
if [[ "${FAKE_RUNNER_MODE:-}" == sleep ]]; then
    trap 'kill "$sleeper" 2>/dev/null; echo runner-got-term >>"$FAKE_LOG"; exit 143' TERM
fi
{ printf 'runner argv=['; printf '%s' "$*"; printf ']\n'; } >>"$FAKE_LOG"
echo "runner-ppid $PPID" >>"$FAKE_LOG"
echo "runner-env SPOTRUNNER_WORK_DIR=${SPOTRUNNER_WORK_DIR:-} SPOTRUNNER_RUNNER_DIR=${SPOTRUNNER_RUNNER_DIR:-}" >>"$FAKE_LOG"
# The JIT config arrives in ACTIONS_RUNNER_INPUT_JITCONFIG and nowhere else:
# not in another variable, not on bootstrap.sh's command line or environment.
if [[ "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" == "$FAKE_JIT" ]]; then echo "runner-jit ok" >>"$FAKE_LOG"; fi
if env | grep -v -e "^FAKE_JIT=" -e "^ACTIONS_RUNNER_INPUT_JITCONFIG=" | grep -qF "$FAKE_JIT"; then echo "runner-env-leak" >>"$FAKE_LOG"; fi
for f in "/proc/$PPID/cmdline" "/proc/$PPID/environ" /proc/$$/cmdline; do
    if [[ -r "$f" ]] && tr '\0' '\n' <"$f" | grep -v "^FAKE_JIT=" | grep -qF "$FAKE_JIT"; then
        echo "runner-proc-leak $f" >>"$FAKE_LOG"
    fi
done
case "${FAKE_RUNNER_MODE:-}" in
    kill) kill -KILL $$ ;;
    sleep)
        sleep 30 &
        sleeper=$!
        wait
        ;;
esac
echo "runner stdout: job done"
exit "${FAKE_RUNNER_EXIT:-0}"
EOF
    mkdir -p "$T/tarsrc/bin"
    echo "fake runner payload" >"$T/tarsrc/bin/Runner.Listener"
    chmod +x "$T/bin/aws" "$T/bin/shutdown" "$T/bin/curl" "$T/tarsrc/run.sh"
    for arch in x64 arm64; do
        tar -czf "$T/actions-runner-linux-$arch-$VERSION.tar.gz" -C "$T/tarsrc" .
    done
    cp "$T/actions-runner-linux-x64-$VERSION.tar.gz" "$T/s3/$BUCKET/runner-cache/"
    printf '%s\n' "$JIT_VALUE" >"$T/params/${PARAM//\//_}"
}

default_args() {
    ARGS=(--runner-name "$RUNNER_NAME" --jit-parameter "$PARAM" --bucket "$BUCKET"
        --runner-version "$VERSION" --max-run-time-secs "$MAX_RUN")
}

# run_bootstrap [ARGS...]: run the script with ARGS (default_args when none);
# extra environment comes from the caller's exported variables. Sets RC.
run_bootstrap() {
    if [[ $# -eq 0 ]]; then
        default_args
        set -- "${ARGS[@]}"
    fi
    RC=0
    mkdir -p "$T/tmp"
    TMPDIR="$T/tmp" PATH="$T/bin:$PATH" \
        SPOTRUNNER_HOME="$T/home" \
        FAKE_LOG="$T/calls.log" FAKE_PARAMS="$T/params" FAKE_S3="$T/s3" \
        FAKE_JIT="$JIT_VALUE" FAKE_TARBALL="$T/actions-runner-linux-x64-$VERSION.tar.gz" \
        ${TIMEOUT[@]+"${TIMEOUT[@]}"} bash ${BASH_FLAGS:+"$BASH_FLAGS"} "${RUN_SCRIPT:-$SCRIPT}" "$@" \
        >"$T/stdout" 2>"$T/stderr" || RC=$?
}

# --- assertions (each failure ends the test's subshell) -------------------------

fail() {
    printf '%s\n' "$*" >"$T/why"
    exit 1
}

assert_eq() { # ACTUAL EXPECTED WHAT
    [[ "$1" == "$2" ]] || fail "$3: expected '$2', got '$1'"
}

assert_ne() { # ACTUAL UNEXPECTED WHAT
    [[ "$1" != "$2" ]] || fail "$3: did not expect '$2'"
}

assert_has() { # FILE FIXED_STRING
    grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks '$2'"
}

assert_lacks() { # FILE FIXED_STRING
    if grep -qF -- "$2" "$1"; then fail "$(basename "$1") unexpectedly has '$2'"; fi
}

# first line number in calls.log starting with PREFIX (0 when absent)
line_of() {
    awk -v p="$1" 'index($0, p) == 1 { print NR; found = 1; exit } END { if (!found) print 0 }' "$T/calls.log"
}

assert_before() { # PREFIX_A PREFIX_B: A logged, B logged, A earlier
    local a b
    a="$(line_of "$1")"
    b="$(line_of "$2")"
    [[ "$a" != 0 ]] || fail "never called: '$1'"
    [[ "$b" != 0 ]] || fail "never called: '$2'"
    [[ "$a" -lt "$b" ]] || fail "'$1' (line $a) not before '$2' (line $b)"
}

assert_never() { # PREFIX
    [[ "$(line_of "$1")" == 0 ]] || fail "unexpected call: $(grep -F -- "$1" "$T/calls.log" | head -n1)"
}

assert_shut_down_last() {
    local last
    last="$(grep '^shutdown' "$T/calls.log" | tail -n1)"
    assert_eq "$last" "shutdown -h now" "last shutdown call"
}

assert_no_secret_output() {
    assert_lacks "$T/stdout" "$JIT_VALUE"
    assert_lacks "$T/stderr" "$JIT_VALUE"
}

# --- tests ------------------------------------------------------------------------

test_happy_path() {
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_eq "$(grep '^shutdown' "$T/calls.log" | head -n1)" "shutdown -h +61" "safety timer"
    assert_before "shutdown -h +61" "aws ssm get-parameter"
    assert_has "$T/calls.log" "aws ssm get-parameter --name $PARAM --with-decryption --query Parameter.Value --output text"
    assert_before "aws ssm get-parameter" "aws ssm delete-parameter --name $PARAM"
    assert_before "aws ssm delete-parameter" "runner "
    assert_eq "$(grep '^runner ' "$T/calls.log")" "runner argv=[]" "runner argv"
    assert_before "runner " "shutdown -h now"
    assert_shut_down_last
    assert_eq "$(grep -c '^shutdown' "$T/calls.log")" 2 "number of shutdown calls"
    [[ ! -e "$T/params/${PARAM//\//_}" ]] || fail "parameter not deleted"
    assert_no_secret_output
    assert_lacks "$T/calls.log" "runner-env-leak"
    assert_lacks "$T/calls.log" "runner-proc-leak"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_lacks "$T/calls.log" "$JIT_VALUE"
    assert_has "$T/calls.log" "runner-env SPOTRUNNER_WORK_DIR=$T/home/work SPOTRUNNER_RUNNER_DIR=$T/home/runner"
    assert_has "$T/home/runner/.env" "SPOTRUNNER_WORK_DIR=$T/home/work"
    assert_has "$T/home/runner/.env" "SPOTRUNNER_RUNNER_DIR=$T/home/runner"
    [[ -d "$T/home/work" ]] || fail "work dir not created"
    assert_has "$T/stdout" "runner stdout: job done"
    assert_eq "$(ls -A "$T/tmp")" "" "leftover temp files"
    # every stderr line is a structured log line
    local bad
    bad="$(grep -vE '^spotrunner-bootstrap: level=(info|warn|error) runner=ci-linux-42-1 msg=".*"$' "$T/stderr" || true)"
    assert_eq "$bad" "" "unstructured stderr lines"
    assert_has "$T/stderr" 'level=info runner=ci-linux-42-1 msg="safety timer armed'
}

test_safety_timer_rounds_up() {
    local secs want
    for pair in 1:1 60:1 61:2 7200:120; do
        secs="${pair%%:*}" want="${pair##*:}"
        : >"$T/calls.log"
        printf '%s\n' "$JIT_VALUE" >"$T/params/${PARAM//\//_}"
        run_bootstrap --runner-name "$RUNNER_NAME" --jit-parameter "$PARAM" --bucket "$BUCKET" \
            --runner-version "$VERSION" --max-run-time-secs "$secs"
        assert_eq "$RC" 0 "exit code for $secs s"
        assert_eq "$(grep '^shutdown' "$T/calls.log" | head -n1)" "shutdown -h +$want" "timer for $secs s"
    done
}

test_region_is_passed_to_every_aws_call() {
    default_args
    run_bootstrap "${ARGS[@]}" --region eu-west-1
    assert_eq "$RC" 0 "exit code"
    local total with
    total="$(grep -c '^aws ' "$T/calls.log")"
    with="$(grep -c '^aws .*--region eu-west-1' "$T/calls.log")"
    assert_ne "$total" 0 "aws calls"
    assert_eq "$with" "$total" "aws calls with --region"
}

test_runner_exit_code_propagates() {
    export FAKE_RUNNER_EXIT=3
    run_bootstrap
    assert_eq "$RC" 3 "exit code"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_shut_down_last
    assert_has "$T/stderr" "runner exited with code 3"
    assert_no_secret_output
}

test_parameter_missing() {
    rm -f "$T/params/${PARAM//\//_}"
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_shut_down_last
    assert_never "runner "
    assert_never "aws s3 cp"
    assert_has "$T/stderr" "level=error"
    assert_has "$T/stderr" "could not read SSM parameter $PARAM"
}

test_empty_parameter_fails_safe() {
    printf '\n' >"$T/params/${PARAM//\//_}"
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_shut_down_last
    assert_never "runner "
}

test_runner_killed_still_shuts_down() {
    export FAKE_RUNNER_MODE=kill
    run_bootstrap
    assert_eq "$RC" 137 "exit code"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_shut_down_last
}

test_sigterm_stops_runner_and_shuts_down() {
    export FAKE_RUNNER_MODE=sleep
    run_bootstrap &
    local i pid=""
    for ((i = 0; i < 100; i++)); do
        if grep -q '^runner-ppid ' "$T/calls.log" 2>/dev/null; then break; fi
        sleep 0.1
    done
    grep -q '^runner-ppid ' "$T/calls.log" || fail "runner never started"
    # run.sh's parent is the bootstrap script itself
    pid="$(awk '/^runner-ppid / { print $2; exit }' "$T/calls.log")"
    [[ -n "$pid" ]] || fail "bootstrap pid not logged"
    kill -TERM "$pid"
    wait
    assert_has "$T/calls.log" "runner-got-term"
    assert_shut_down_last
    assert_has "$T/stderr" "received SIGTERM"
    assert_has "$T/stderr" "exit_code=143"
}

test_tarball_from_s3_cache() {
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "aws s3 cp --only-show-errors s3://$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz"
    assert_never "curl"
    [[ -x "$T/home/runner/run.sh" ]] || fail "run.sh not extracted"
    [[ -f "$T/home/runner/bin/Runner.Listener" ]] || fail "tarball not fully extracted"
}

test_tarball_from_github_when_not_cached() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "curl"
    assert_has "$T/calls.log" "https://github.com/actions/runner/releases/download/v$VERSION/actions-runner-linux-x64-$VERSION.tar.gz"
    assert_before "curl" "aws s3api put-object --bucket $BUCKET --key runner-cache/actions-runner-linux-x64-$VERSION.tar.gz --body $T/tmp/"
    assert_has "$T/calls.log" " --if-none-match *"
    [[ -f "$T/s3/$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz" ]] || fail "not uploaded to the S3 cache"
    assert_before "curl" "runner "
    assert_shut_down_last
}

test_cache_upload_failure_is_only_a_warning() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    export FAKE_S3_READONLY=1
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/stderr" "level=warn"
    assert_has "$T/stderr" "could not upload runner to the S3 cache"
    assert_has "$T/calls.log" "runner-jit ok"
}

test_download_failure_fails_safe() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    export FAKE_CURL_FAIL=1
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_never "runner "
    assert_shut_down_last
    assert_has "$T/stderr" "could not download the runner"
}

test_arm64_tarball_name() {
    cp "$T/actions-runner-linux-arm64-$VERSION.tar.gz" "$T/s3/$BUCKET/runner-cache/"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-arch arm64
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "s3://$BUCKET/runner-cache/actions-runner-linux-arm64-$VERSION.tar.gz"
    assert_never "curl"
}

test_preinstalled_runner_is_reused() {
    mkdir -p "$T/home/runner"
    cp "$T/tarsrc/run.sh" "$T/home/runner/run.sh"
    printf 'FOO=bar\nSPOTRUNNER_WORK_DIR=/old\n' >"$T/home/runner/.env"
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_never "aws s3 cp"
    assert_never "curl"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_has "$T/home/runner/.env" "FOO=bar"
    assert_lacks "$T/home/runner/.env" "SPOTRUNNER_WORK_DIR=/old"
    assert_eq "$(grep -c '^SPOTRUNNER_WORK_DIR=' "$T/home/runner/.env")" 1 "SPOTRUNNER_WORK_DIR lines in .env"
}

test_startup_script_runs_before_runner() {
    mkdir -p "$T/s3/$BUCKET/pools/linux"
    cat >"$T/s3/$BUCKET/pools/linux/startup.sh" <<'EOF'
echo "startup-script work=$SPOTRUNNER_WORK_DIR" >>"$FAKE_LOG"
if env | grep -v "^FAKE_JIT=" | grep -qF "$FAKE_JIT"; then echo "startup-env-leak" >>"$FAKE_LOG"; fi
EOF
    default_args
    run_bootstrap "${ARGS[@]}" --startup-script-key pools/linux/startup.sh
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "aws s3 cp --only-show-errors s3://$BUCKET/pools/linux/startup.sh"
    assert_before "startup-script" "runner "
    assert_has "$T/calls.log" "startup-script work=$T/home/work"
    assert_lacks "$T/calls.log" "startup-env-leak"
    assert_shut_down_last
}

test_failing_startup_script_aborts() {
    mkdir -p "$T/s3/$BUCKET/pools"
    # shellcheck disable=SC2016  # expanded by the startup script, not here
    printf 'echo startup-script >>"$FAKE_LOG"\nexit 5\n' >"$T/s3/$BUCKET/pools/bad.sh"
    default_args
    run_bootstrap "${ARGS[@]}" --startup-script-key pools/bad.sh
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/calls.log" "startup-script"
    assert_never "runner "
    assert_shut_down_last
    assert_has "$T/stderr" "startup script failed with exit code 5"
}

test_missing_startup_script_aborts() {
    default_args
    run_bootstrap "${ARGS[@]}" --startup-script-key pools/nope.sh
    assert_ne "$RC" 0 "exit code"
    assert_never "runner "
    assert_shut_down_last
}

test_empty_startup_script_key_is_ignored() {
    default_args
    run_bootstrap "${ARGS[@]}" --startup-script-key "" --region ""
    assert_eq "$RC" 0 "exit code"
    assert_lacks "$T/calls.log" "--region"
    assert_has "$T/calls.log" "runner-jit ok"
}

test_missing_required_flags() {
    local drop i
    for drop in --runner-name --jit-parameter --bucket --runner-version --max-run-time-secs; do
        : >"$T/calls.log"
        default_args
        local args=()
        for ((i = 0; i < ${#ARGS[@]}; i += 2)); do
            [[ "${ARGS[i]}" == "$drop" ]] || args+=("${ARGS[i]}" "${ARGS[i + 1]}")
        done
        run_bootstrap "${args[@]}"
        assert_ne "$RC" 0 "exit code without $drop"
        assert_has "$T/stderr" "missing required flag(s): $drop"
        assert_eq "$(grep '^shutdown' "$T/calls.log")" "shutdown -h now" "shutdown without $drop"
        assert_never "aws "
        assert_never "runner "
    done
}

test_bad_flags_fail_safe() {
    local bad
    for bad in "--max-run-time-secs 0" "--max-run-time-secs abc" "--runner-arch sparc" "--bogus x"; do
        : >"$T/calls.log"
        default_args
        # shellcheck disable=SC2086  # split "flag value" on purpose
        run_bootstrap "${ARGS[@]}" $bad
        assert_ne "$RC" 0 "exit code with $bad"
        assert_has "$T/stderr" "${bad%% *}"
        assert_shut_down_last
        assert_never "runner "
    done
}

test_no_shutdown_mode() {
    export SPOTRUNNER_NO_SHUTDOWN=1
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_never "shutdown"
    # failure paths do not shut down either
    rm -f "$T/params/${PARAM//\//_}"
    : >"$T/calls.log"
    run_bootstrap
    assert_ne "$RC" 0 "exit code with missing parameter"
    assert_never "shutdown"
    : >"$T/calls.log"
    run_bootstrap --bucket "$BUCKET"
    assert_ne "$RC" 0 "exit code with missing flags"
    assert_never "shutdown"
}

test_runner_cmd_override() {
    cat >"$T/custom-runner" <<'EOF'
#!/usr/bin/env bash
{ printf 'custom-runner'; printf ' %s' "$@"; printf '\n'; } >>"$FAKE_LOG"
if [[ "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" == "$FAKE_JIT" ]]; then echo "custom-runner-jit ok" >>"$FAKE_LOG"; fi
exit 4
EOF
    chmod +x "$T/custom-runner"
    export SPOTRUNNER_RUNNER_CMD="$T/custom-runner --once"
    export SPOTRUNNER_RUNNER_DIR="$T/elsewhere/runner" SPOTRUNNER_WORK_DIR="$T/elsewhere/work"
    run_bootstrap
    assert_eq "$RC" 4 "exit code"
    assert_eq "$(grep '^custom-runner ' "$T/calls.log")" "custom-runner --once" "custom runner argv"
    assert_has "$T/calls.log" "custom-runner-jit ok"
    assert_never "runner "
    assert_never "aws s3 cp"
    assert_never "curl"
    assert_has "$T/elsewhere/runner/.env" "SPOTRUNNER_WORK_DIR=$T/elsewhere/work"
    [[ -d "$T/elsewhere/work" ]] || fail "work dir not created"
    assert_shut_down_last
    assert_no_secret_output
}

test_xtrace_does_not_leak_jit() {
    BASH_FLAGS=-x run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_no_secret_output
}

# render_document KEY=VALUE...: the document's runCommand with {{ KEY }}
# replaced (every other parameter gets its default), into $T/ssm-command.sh.
render_document() {
    awk '/^ *runCommand:/ { rc = 1; next }
        rc && /^ *- \|/ { blk = 1; next }
        blk { if ($0 == "" || $0 ~ /^          /) { sub(/^          /, ""); print } else exit }' \
        "$DOC" >"$T/ssm-command.sh"
    local kv k v
    for kv in "$@" runnerArch=x64 startupScriptKey= region=; do
        k="${kv%%=*}" v="${kv#*=}"
        sed "s#{{ $k }}#$v#g" "$T/ssm-command.sh" >"$T/ssm-command.tmp"
        mv "$T/ssm-command.tmp" "$T/ssm-command.sh"
    done
}

test_ssm_document() {
    [[ -f "$DOC" ]] || fail "missing $DOC"
    grep -q '^schemaVersion: "2.2"' "$DOC" || fail "schemaVersion is not \"2.2\""
    assert_eq "$(grep -c 'action: aws:runShellScript' "$DOC")" 1 "aws:runShellScript steps"
    assert_has "$DOC" 'timeoutSeconds: "{{ maxRunTimeSecs }}"'
    if grep -qi 'jitconfig' "$DOC"; then fail "the document must not carry the JIT config"; fi
    local p
    for p in runnerName jitParameter bucket scriptKey runnerVersion runnerArch startupScriptKey maxRunTimeSecs region; do
        grep -q "^  $p:\$" "$DOC" || fail "parameter $p not declared"
    done
    # every {{ x }} used is declared
    for p in $(grep -o '{{ *[A-Za-z]* *}}' "$DOC" | tr -d '{} ' | sort -u); do
        grep -q "^  $p:\$" "$DOC" || fail "{{ $p }} used but not declared"
    done

    mkdir -p "$T/s3/$BUCKET/spotrunner"
    cp "$SCRIPT" "$T/s3/$BUCKET/spotrunner/bootstrap.sh"
    render_document runnerName="$RUNNER_NAME" jitParameter="$PARAM" bucket="$BUCKET" \
        scriptKey=spotrunner/bootstrap.sh runnerVersion="$VERSION" maxRunTimeSecs=120
    if grep -q '{{' "$T/ssm-command.sh"; then fail "unrendered parameter: $(grep '{{' "$T/ssm-command.sh" | head -n1)"; fi
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck -s bash "$T/ssm-command.sh" >"$T/sc.out" 2>&1 || fail "shellcheck on the rendered command: $(head -n 5 "$T/sc.out" | tr '\n' ' ')"
    fi
    RUN_SCRIPT="$T/ssm-command.sh" run_bootstrap --unused
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "aws s3 cp --only-show-errors s3://$BUCKET/spotrunner/bootstrap.sh"
    assert_eq "$(grep '^shutdown' "$T/calls.log" | head -n1)" "shutdown -h +2" "safety timer"
    assert_eq "$(grep '^runner ' "$T/calls.log")" "runner argv=[]" "runner argv"
    assert_lacks "$T/calls.log" "--region"
    assert_shut_down_last
    assert_no_secret_output

    # region given, bootstrap script missing from S3 -> shutdown, non-zero
    : >"$T/calls.log"
    rm -f "$T/s3/$BUCKET/spotrunner/bootstrap.sh"
    render_document runnerName="$RUNNER_NAME" jitParameter="$PARAM" bucket="$BUCKET" \
        scriptKey=spotrunner/bootstrap.sh runnerVersion="$VERSION" maxRunTimeSecs=120 region=eu-west-1
    RUN_SCRIPT="$T/ssm-command.sh" run_bootstrap --unused
    assert_ne "$RC" 0 "exit code without bootstrap.sh in S3"
    assert_has "$T/calls.log" "aws s3 cp --only-show-errors --region eu-west-1 s3://$BUCKET/spotrunner/bootstrap.sh"
    assert_eq "$(grep '^shutdown' "$T/calls.log")" "shutdown -h now" "shutdown without bootstrap.sh"
    assert_never "runner "
}

test_shellcheck() {
    if ! command -v shellcheck >/dev/null 2>&1; then
        echo "SKIP shellcheck: not installed" >"$T/skip"
        return 0
    fi
    local out
    out="$(shellcheck -x "$SCRIPT" "$SELF" 2>&1)" || fail "shellcheck: $(printf '%s' "$out" | head -n 20 | tr '\n' ' ')"
}

# --- runner -------------------------------------------------------------------------

run_test() {
    local name="$1"
    if [[ -n "$FILTER" && "$name" != *"$FILTER"* ]]; then
        return 0
    fi
    T="$SCRATCH/$name"
    mkdir -p "$T"
    make_fakes
    # Each test runs in a subshell: exported FAKE_*/SPOTRUNNER_* do not leak.
    ("test_$name")
    local rc=$?
    if [[ -f "$T/skip" ]]; then
        echo "$(cat "$T/skip")  <<<<<<<<<<<<<<<<<<<<<<<<<<<< NOT CHECKED" >&2
        cat "$T/skip"
        return 0
    fi
    if [[ "$rc" == 0 && ! -f "$T/why" ]]; then
        echo "ok $name"
        PASSED=$((PASSED + 1))
    else
        local why="exited $rc"
        [[ -f "$T/why" ]] && why="$(cat "$T/why")"
        echo "FAIL $name: $why"
        FAILED=$((FAILED + 1))
    fi
}

# Never let a host's real environment change what the script sees.
unset SPOTRUNNER_HOME SPOTRUNNER_RUNNER_DIR SPOTRUNNER_WORK_DIR SPOTRUNNER_RUNNER_CMD \
    SPOTRUNNER_NO_SHUTDOWN BASH_FLAGS

for t in $(declare -F | awk '{print $3}' | grep '^test_' | sed 's/^test_//'); do
    run_test "$t"
done

echo "$PASSED passed, $FAILED failed"
[[ "$FAILED" == 0 ]]
