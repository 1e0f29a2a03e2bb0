#!/usr/bin/env bash
# Self-contained tests for scripts/runner/bootstrap.sh.
#
# Every test builds a temp dir with fake `aws`, `shutdown` and `curl` on PATH
# (small bash scripts that append their argv to calls.log), a fake S3 "bucket"
# directory holding a real runner tar.gz with a fake run.sh, and a fake SSM
# parameter store directory; fake user tools (id, getent, useradd, usermod,
# chown, visudo, setpriv) over $T/passwd and $T/group, the current user being
# $FAKE_USER (tester unless a test sets root). The run-once tests start two bootstraps on one
# "VM" (one state dir), concurrently or one after the other. Output: one
# `ok NAME` / `FAIL NAME: why` line per
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
echo "$PPID" >>"${FAKE_LOG%/*}/shutdown-callers"
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
echo "runner-id user=$(id -un) home=${HOME:-} USER=${USER:-} allow_root=${RUNNER_ALLOW_RUNASROOT:-}" >>"$FAKE_LOG"
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
    gate) # the job runs until the test creates $FAKE_RUNNER_GATE
        for ((i = 0; i < 600; i++)); do
            [[ -e "$FAKE_RUNNER_GATE" ]] && break
            sleep 0.05
        done
        ;;
esac
echo "runner stdout: job done"
echo "runner-exit ${FAKE_RUNNER_EXIT:-0}" >>"$FAKE_LOG"
exit "${FAKE_RUNNER_EXIT:-0}"
EOF
    mkdir -p "$T/tarsrc/bin"
    echo "fake runner payload" >"$T/tarsrc/bin/Runner.Listener"
    make_user_fakes
    chmod +x "$T/bin/aws" "$T/bin/shutdown" "$T/bin/curl" "$T/tarsrc/run.sh"
    for arch in x64 arm64; do
        tar -czf "$T/actions-runner-linux-$arch-$VERSION.tar.gz" -C "$T/tarsrc" .
    done
    # The cache as the runner-cache task fills it: the tarball, then its
    # verified .sha256 sidecar.
    cache_tarball x64
    printf '%s\n' "$JIT_VALUE" >"$T/params/${PARAM//\//_}"
}

# cache_tarball ARCH: put ARCH's tarball and its sidecar in the fake cache.
cache_tarball() {
    local name="actions-runner-linux-$1-$VERSION.tar.gz"
    cp "$T/$name" "$T/s3/$BUCKET/runner-cache/"
    sha256sum -- "$T/$name" | cut -d' ' -f1 | tr -d '\n' >"$T/s3/$BUCKET/runner-cache/$name.sha256"
}

# make_user_fakes: the VM's users in $T/passwd and $T/group, and fakes of the
# tools bootstrap.sh uses to look them up, create them and run as them. The
# current user is $FAKE_USER (default tester, uid 1000; root: uid 0). Like the
# real tools, the ones that change the system refuse a non-root caller.
make_user_fakes() {
    mkdir -p "$T/homes"
    printf 'root:x:0:0:root:/root:/bin/bash\ntester:x:1000:1000::%s/tester:/bin/bash\n' "$T/homes" >"$T/passwd"
    printf 'root:x:0:\ntester:x:1000:\n' >"$T/group"

    cat >"$T/bin/id" <<'EOF'
#!/usr/bin/env bash
me="${FAKE_USER:-tester}"
entry() { awk -F: -v u="$1" '$1 == u { print; exit }' "$FAKE_PASSWD"; }
case "$#:${1:-}" in
    1:-u) entry "$me" | cut -d: -f3 ;;
    1:-un) printf '%s\n' "$me" ;;
    2:-u)
        e="$(entry "$2")"
        [[ -n "$e" ]] || { echo "id: '$2': no such user" >&2; exit 1; }
        cut -d: -f3 <<<"$e"
        ;;
    *) echo "fake id: unsupported: $*" >&2; exit 2 ;;
esac
EOF

    cat >"$T/bin/getent" <<'EOF'
#!/usr/bin/env bash
case "$1" in
    passwd) db="$FAKE_PASSWD" ;;
    group) db="$FAKE_GROUP" ;;
    *) echo "fake getent: unsupported: $*" >&2; exit 2 ;;
esac
awk -F: -v k="$2" '$1 == k { print; found = 1; exit } END { exit !found ? 2 : 0 }' "$db"
EOF

    # needs_root TOOL: exit like the real tool when the caller is not root.
    # shellcheck disable=SC2016  # expanded by the fakes, not here
    local needs_root='[[ "${FAKE_USER:-tester}" == root ]] || { echo "$(basename "$0"): Permission denied." >&2; exit 1; }'

    cat >"$T/bin/useradd" <<EOF
#!/usr/bin/env bash
{ printf 'useradd'; printf ' %s' "\$@"; printf '\n'; } >>"\$FAKE_LOG"
$needs_root
EOF
    cat >>"$T/bin/useradd" <<'EOF'
home=0 usergroup=0 gid="" shell=/bin/sh name=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        -m | --create-home) home=1; shift ;;
        -U | --user-group) usergroup=1; shift ;;
        -g | --gid) gid="$2"; shift 2 ;;
        -s | --shell) shell="$2"; shift 2 ;;
        -*) echo "fake useradd: unsupported option $1" >&2; exit 2 ;;
        *) name="$1"; shift ;;
    esac
done
if awk -F: -v u="$name" '$1 == u { f = 1 } END { exit !f }' "$FAKE_PASSWD"; then
    echo "useradd: user '$name' already exists" >&2
    exit 9
fi
uid=$(($(cut -d: -f3 "$FAKE_PASSWD" | sort -n | tail -n1) + 1))
if [[ "$usergroup" == 1 ]]; then
    if awk -F: -v g="$name" '$1 == g { f = 1 } END { exit !f }' "$FAKE_GROUP"; then
        echo "useradd: group $name exists - if you want to add this user to that group, use -g." >&2
        exit 9
    fi
    gid_num="$uid"
    printf '%s:x:%s:\n' "$name" "$gid_num" >>"$FAKE_GROUP"
elif [[ -n "$gid" ]]; then
    gid_num="$(awk -F: -v g="$gid" '$1 == g { print $3; exit }' "$FAKE_GROUP")"
    [[ -n "$gid_num" ]] || { echo "useradd: group '$gid' does not exist" >&2; exit 6; }
else
    echo "fake useradd: give -U or -g" >&2
    exit 2
fi
printf '%s:x:%s:%s::%s/%s:%s\n' "$name" "$uid" "$gid_num" "$FAKE_HOMES" "$name" "$shell" >>"$FAKE_PASSWD"
[[ "$home" == 0 ]] || mkdir -p "$FAKE_HOMES/$name"
EOF

    local tool
    for tool in usermod chown; do
        cat >"$T/bin/$tool" <<EOF
#!/usr/bin/env bash
{ printf '$tool'; printf ' %s' "\$@"; printf '\n'; } >>"\$FAKE_LOG"
$needs_root
EOF
    done

    # visudo -cf FILE: the line bootstrap.sh writes must be one sudo parses.
    cat >"$T/bin/visudo" <<'EOF'
#!/usr/bin/env bash
{ printf 'visudo'; printf ' %s' "$@"; printf '\n'; } >>"$FAKE_LOG"
[[ "$1" == -cf ]] || { echo "fake visudo: unsupported: $*" >&2; exit 2; }
bad="$(grep -vE '^(#.*|Defaults:[a-z_][a-z0-9_-]* !requiretty|[a-z_][a-z0-9_-]* ALL=\(ALL(:ALL)?\) NOPASSWD: ?ALL|)$' "$2")"
[[ -z "$bad" ]] || { echo "$2: syntax error near: $bad" >&2; exit 1; }
EOF

    # setpriv --reuid=U --regid=G --init-groups -- CMD...: run CMD as U.
    cat >"$T/bin/setpriv" <<EOF
#!/usr/bin/env bash
{ printf 'setpriv'; printf ' %s' "\$@"; printf '\n'; } >>"\$FAKE_LOG"
$needs_root
EOF
    cat >>"$T/bin/setpriv" <<'EOF'
uid="" gid="" groups=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reuid=*) uid="${1#*=}"; shift ;;
        --regid=*) gid="${1#*=}"; shift ;;
        --init-groups) groups=1; shift ;;
        --) shift; break ;;
        *) echo "fake setpriv: unsupported: $1" >&2; exit 2 ;;
    esac
done
[[ -n "$uid" && -n "$gid" && "$groups" == 1 ]] || { echo "fake setpriv: give --reuid, --regid and --init-groups" >&2; exit 2; }
user="$(awk -F: -v u="$uid" '$3 == u { print $1; exit }' "$FAKE_PASSWD")"
[[ -n "$user" ]] || { echo "setpriv: uid $uid not found" >&2; exit 1; }
FAKE_USER="$user" exec "$@"
EOF
    printf '#!/usr/bin/env bash\necho "fake sudo: not for bootstrap.sh" >&2\nexit 1\n' >"$T/bin/sudo"
    chmod +x "$T/bin/id" "$T/bin/getent" "$T/bin/useradd" "$T/bin/usermod" "$T/bin/chown" \
        "$T/bin/visudo" "$T/bin/setpriv" "$T/bin/sudo"
}

default_args() {
    ARGS=(--runner-name "$RUNNER_NAME" --jit-parameter "$PARAM" --bucket "$BUCKET"
        --runner-version "$VERSION" --max-run-time-secs "$MAX_RUN")
}

# run_bootstrap [ARGS...]: run the script with ARGS (default_args when none);
# extra environment comes from the caller's exported variables. Sets RC.
# Output goes to $T/stdout and $T/stderr ($T/$OUT.stdout|stderr if OUT is
# set). Each run is on a fresh "VM" (the default state dir under
# SPOTRUNNER_HOME is wiped) unless KEEP_STATE=1.
run_bootstrap() {
    if [[ $# -eq 0 ]]; then
        default_args
        set -- "${ARGS[@]}"
    fi
    RC=0
    mkdir -p "$T/tmp"
    [[ "${KEEP_STATE:-}" == 1 ]] || rm -rf -- "$T/home/state"
    TMPDIR="$T/tmp" PATH="$T/bin:$PATH" \
        SPOTRUNNER_HOME="$T/home" \
        FAKE_LOG="$T/calls.log" FAKE_PARAMS="$T/params" FAKE_S3="$T/s3" \
        FAKE_JIT="$JIT_VALUE" FAKE_TARBALL="$T/actions-runner-linux-x64-$VERSION.tar.gz" \
        FAKE_PASSWD="$T/passwd" FAKE_GROUP="$T/group" FAKE_HOMES="$T/homes" \
        SPOTRUNNER_SUDOERS_DIR="$T/sudoers.d" \
        ${TIMEOUT[@]+"${TIMEOUT[@]}"} bash ${BASH_FLAGS:+"$BASH_FLAGS"} "${RUN_SCRIPT:-$SCRIPT}" "$@" \
        >"$T/${OUT:+$OUT.}stdout" 2>"$T/${OUT:+$OUT.}stderr" || RC=$?
}

# start_bootstrap NAME: run_bootstrap (default args, state kept) in the
# background, output in $T/NAME.stdout|stderr. It starts when the test calls
# release_barrier (all at the same instant), or at once if hold_barrier was
# not called. When it ends, "bootstrap-exit NAME RC" is appended to calls.log
# and RC written to $T/NAME.rc.
start_bootstrap() {
    local name="$1"
    rm -f -- "$T/$name.rc"
    (
        exec 8>&-
        flock -s "$T/barrier" true
        OUT="$name" KEEP_STATE=1 run_bootstrap
        echo "bootstrap-exit $name $RC" >>"$T/calls.log"
        echo "$RC" >"$T/$name.rc"
    ) &
}

# hold_barrier / release_barrier: start_bootstrap'ed runs wait in between.
hold_barrier() {
    exec 8>"$T/barrier"
    flock 8
}
release_barrier() {
    flock -u 8
    exec 8>&-
}

# wait_for FILE FIXED_STRING: up to 20 s for FILE to contain the string.
wait_for() {
    local i
    for ((i = 0; i < 400; i++)); do
        if grep -qF -- "$2" "$1" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    fail "timed out waiting for '$2' in $(basename "$1")"
}

put_parameter() {
    printf '%s\n' "$JIT_VALUE" >"$T/params/${PARAM//\//_}"
}

count_calls() { # PREFIX: calls.log lines starting with PREFIX
    awk -v p="$1" 'index($0, p) == 1 { n++ } END { print n + 0 }' "$T/calls.log"
}

# --- assertions (each failure ends the test's subshell) -------------------------

fail() {
    printf '%s\n' "$*" >"$T/why"
    # Background bootstraps (start_bootstrap) end before the test's dir goes.
    if [[ -n "${FAKE_RUNNER_GATE:-}" ]]; then touch "$FAKE_RUNNER_GATE"; fi
    flock -u 8 2>/dev/null || true
    wait
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
    # one run per VM: marker (written before the timer) and exit code
    assert_has "$T/home/state/bootstrap.marker" "pid="
    assert_eq "$(cat "$T/home/state/bootstrap.exit-status")" 0 "recorded exit code"
    assert_eq "$(sort -u "$T/shutdown-callers" | wc -l | tr -d ' ')" 1 "shutdown callers"
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

# sha_of FILE: its SHA-256 (hex).
sha_of() {
    sha256sum -- "$1" | cut -d' ' -f1
}

test_tarball_from_github_when_not_cached() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz")"
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
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz")"
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/stderr" "level=warn"
    assert_has "$T/stderr" "could not upload runner to the S3 cache"
    assert_has "$T/calls.log" "runner-jit ok"
}

test_good_checksum_passes() {
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz")"
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/stderr" "verified: sha256 $(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz") (from --runner-sha256)"
    assert_has "$T/calls.log" "runner-jit ok"
    # With --runner-sha256 the sidecar is not needed.
    assert_lacks "$T/calls.log" ".tar.gz.sha256"
}

test_wrong_checksum_refuses() {
    local wrong good
    wrong="$(printf 'x' | sha256sum | cut -d' ' -f1)"
    good="$(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz")"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$wrong"
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/stderr" "level=error"
    assert_has "$T/stderr" "sha256 $good is not the expected $wrong"
    assert_never "runner "
    [[ ! -e "$T/home/runner/run.sh" ]] || fail "a refused tarball was extracted"
    assert_shut_down_last
}

test_wrong_checksum_from_github_is_not_uploaded() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$(printf 'x' | sha256sum | cut -d' ' -f1)"
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/calls.log" "curl"
    assert_never "aws s3api put-object"
    [[ ! -e "$T/s3/$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz" ]] || fail "uploaded a refused tarball"
    assert_never "runner "
    assert_shut_down_last
}

test_cache_sidecar_verifies_without_the_flag() {
    local cached="$T/s3/$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz"
    sha_of "$cached" | tr -d '\n' >"$cached.sha256"
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/stderr" "verified: sha256 $(sha_of "$cached") (from s3://$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz.sha256)"
    # A cached tarball that does not match its sidecar (planted) is refused.
    : >"$T/calls.log"
    rm -rf -- "$T/home/runner"
    put_parameter # the first run read and deleted it
    printf 'tampered' >"$cached"
    run_bootstrap
    assert_ne "$RC" 0 "exit code with a tampered cached tarball"
    assert_has "$T/stderr" "is not the expected"
    assert_never "runner "
}

test_unverified_github_tarball_is_not_uploaded() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    default_args
    run_bootstrap "${ARGS[@]}" --allow-unverified-runner true
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/stderr" "not verified"
    assert_has "$T/stderr" "not uploading an unverified runner"
    assert_never "aws s3api put-object"
    assert_has "$T/calls.log" "runner-jit ok"
}

test_download_failure_fails_safe() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    export FAKE_CURL_FAIL=1
    default_args
    run_bootstrap "${ARGS[@]}" --runner-sha256 "$(sha_of "$T/actions-runner-linux-x64-$VERSION.tar.gz")"
    assert_ne "$RC" 0 "exit code"
    assert_never "runner "
    assert_shut_down_last
    assert_has "$T/stderr" "could not download the runner"
}

test_arm64_tarball_name() {
    cache_tarball arm64
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
    for bad in "--max-run-time-secs 0" "--max-run-time-secs abc" "--runner-arch sparc" "--runner-sha256 ABC" "--bogus x" \
        "--runner-user Runner" "--runner-user run;ner" "--runner-user -runner" "--runner-user a234567890123456789012345678901234" \
        "--allow-unverified-runner yes"; do
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

# --- the runner cache fails closed (no verified checksum, no install) ------------

# plant_tarball: a job's tarball in the cache (a runner-cache upload), no sidecar.
plant_tarball() {
    mkdir -p "$T/planted"
    # shellcheck disable=SC2016  # expanded by the planted run.sh, not here
    printf '#!/usr/bin/env bash\necho planted-runner >>"$FAKE_LOG"\n' >"$T/planted/run.sh"
    chmod +x "$T/planted/run.sh"
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    tar -czf "$T/s3/$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz" -C "$T/planted" .
}

test_planted_tarball_without_checksum_is_refused() {
    plant_tarball
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/stderr" "level=error runner=ci-linux-42-1 msg=\"runner $VERSION (x64): no verified SHA-256"
    assert_has "$T/stderr" "refusing to install it"
    assert_never "runner "
    assert_never "planted-runner"
    assert_never "curl"
    [[ ! -e "$T/home/runner/run.sh" ]] || fail "an unverified tarball was extracted"
    assert_shut_down_last
}

test_no_checksum_no_install_from_github_either() {
    rm -f "$T/s3/$BUCKET/runner-cache/"*
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/stderr" "runner $VERSION (x64): no verified SHA-256"
    assert_never "curl"
    assert_never "aws s3api put-object"
    assert_never "runner "
    assert_shut_down_last
}

test_unverified_runner_allowed_when_opted_out() {
    # The pool pins the version and sets allow_unverified_runner (validated
    # by the configuration): the VM gets --allow-unverified-runner true.
    plant_tarball
    default_args
    run_bootstrap "${ARGS[@]}" --allow-unverified-runner true
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "planted-runner"
    assert_has "$T/stderr" "level=warn runner=ci-linux-42-1 msg=\"runner $VERSION (x64): no verified SHA-256; installing it unverified (--allow-unverified-runner true)"
    assert_shut_down_last
}

test_opt_out_never_overrides_a_wrong_checksum() {
    local cached="$T/s3/$BUCKET/runner-cache/actions-runner-linux-x64-$VERSION.tar.gz" genuine
    genuine="$(sha_of "$cached")"
    # a tarball replaced under its sidecar
    plant_tarball
    printf '%s' "$genuine" >"$cached.sha256"
    default_args
    run_bootstrap "${ARGS[@]}" --allow-unverified-runner true
    assert_ne "$RC" 0 "exit code with a sidecar mismatch"
    assert_has "$T/stderr" "sha256 $(sha_of "$cached") is not the expected $genuine"
    assert_never "planted-runner"
    # a checksum sent with the command that does not match
    : >"$T/calls.log"
    put_parameter
    run_bootstrap "${ARGS[@]}" --allow-unverified-runner true --runner-sha256 "$genuine"
    assert_ne "$RC" 0 "exit code with a --runner-sha256 mismatch"
    assert_has "$T/stderr" "is not the expected $genuine (from --runner-sha256)"
    assert_never "planted-runner"
    assert_never "runner "
    [[ ! -e "$T/home/runner/run.sh" ]] || fail "a refused tarball was extracted"
}

# --- the runner's user ----------------------------------------------------------------

# sudoers_of USER: the sudoers file bootstrap.sh writes for USER.
sudoers_of() {
    printf '%s/90-spotrunner-%s' "$T/sudoers.d" "$1"
}

test_runner_runs_as_a_new_non_root_user_with_sudo() {
    export FAKE_USER=root
    printf 'docker:x:990:\n' >>"$T/group"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user runner
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "useradd --create-home --shell /bin/bash --user-group runner"
    local entry
    entry="$(awk -F: '$1 == "runner"' "$T/passwd")"
    assert_ne "$entry" "" "runner in passwd"
    assert_has "$T/calls.log" "usermod -aG docker runner"
    # passwordless sudo, as on GitHub's hosted runners, checked by visudo
    local sudoers
    sudoers="$(sudoers_of runner)"
    assert_has "$sudoers" "runner ALL=(ALL) NOPASSWD:ALL"
    assert_eq "$(stat -c %a "$sudoers")" 440 "sudoers file mode"
    assert_has "$T/calls.log" "visudo -cf $T/sudoers.d/"
    # it owns the runner and work directories, and the runner runs as it
    assert_has "$T/calls.log" "chown -R 1001:1001 -- $T/home/runner $T/home/work"
    assert_before "chown -R 1001:1001" "runner argv"
    assert_has "$T/calls.log" "setpriv --reuid=1001 --regid=1001 --init-groups -- $T/home/runner/run.sh"
    assert_has "$T/calls.log" "runner-id user=runner home=$T/homes/runner USER=runner allow_root="
    assert_lacks "$T/calls.log" "allow_root=1"
    # the JIT config still only in the runner's environment
    assert_has "$T/calls.log" "runner-jit ok"
    assert_lacks "$T/calls.log" "runner-env-leak"
    assert_lacks "$T/calls.log" "runner-proc-leak"
    assert_lacks "$T/calls.log" "$JIT_VALUE"
    assert_no_secret_output
    assert_has "$T/stderr" "runner user runner created (passwordless sudo)"
    assert_shut_down_last
}

test_existing_runner_user_is_reused() {
    export FAKE_USER=root
    printf 'ci:x:1500:1500::%s/ci:/bin/bash\n' "$T/homes" >>"$T/passwd"
    printf 'ci:x:1500:\n' >>"$T/group"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user ci
    assert_eq "$RC" 0 "exit code"
    assert_never "useradd"
    assert_never "usermod" # no docker group on this VM
    assert_has "$(sudoers_of ci)" "ci ALL=(ALL) NOPASSWD:ALL"
    assert_has "$T/calls.log" "setpriv --reuid=1500 --regid=1500 --init-groups -- "
    assert_has "$T/calls.log" "runner-id user=ci home=$T/homes/ci USER=ci allow_root="
}

test_docker_group_made_by_the_startup_script_is_joined() {
    export FAKE_USER=root
    mkdir -p "$T/s3/$BUCKET/pools"
    # shellcheck disable=SC2016  # expanded by the startup script, not here
    printf 'echo startup-script >>"$FAKE_LOG"\nprintf "docker:x:990:\\n" >>"$FAKE_GROUP"\n' >"$T/s3/$BUCKET/pools/docker.sh"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user runner --startup-script-key pools/docker.sh
    assert_eq "$RC" 0 "exit code"
    assert_before "useradd" "startup-script"
    assert_before "startup-script" "usermod -aG docker runner"
    assert_before "usermod -aG docker runner" "runner argv"
}

test_user_group_of_the_same_name_is_used() {
    export FAKE_USER=root
    printf 'runner:x:1200:\n' >>"$T/group"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user runner
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "useradd --create-home --shell /bin/bash --gid runner runner"
    assert_has "$T/calls.log" "setpriv --reuid=1001 --regid=1200 --init-groups -- "
}

test_root_runner_user_is_an_explicit_choice() {
    export FAKE_USER=root
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user root
    assert_eq "$RC" 0 "exit code"
    assert_never "useradd"
    assert_never "setpriv"
    assert_never "chown"
    [[ ! -e "$T/sudoers.d" ]] || fail "sudoers written for root"
    assert_has "$T/calls.log" "runner-id user=root home="
    assert_has "$T/calls.log" "allow_root=1"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_has "$T/stderr" "the runner runs as root (RUNNER_ALLOW_RUNASROOT=1)"
}

test_runner_as_the_current_user_without_the_flag() {
    # Local mode: bootstrap.sh runs as the user the runner should run as.
    export RUNNER_ALLOW_RUNASROOT=1
    run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_never "useradd"
    assert_never "setpriv"
    assert_never "chown"
    [[ ! -e "$T/sudoers.d" ]] || fail "sudoers written"
    assert_has "$T/calls.log" "runner-id user=tester home="
    assert_has "$T/calls.log" " allow_root="
    assert_lacks "$T/calls.log" "allow_root=1"
    # asking for that same user changes nothing either
    : >"$T/calls.log"
    put_parameter
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user tester
    assert_eq "$RC" 0 "exit code with --runner-user tester"
    assert_never "useradd"
    assert_never "setpriv"
    assert_has "$T/calls.log" "runner-id user=tester home="
}

test_switching_user_needs_root() {
    local user
    for user in runner root; do
        : >"$T/calls.log"
        default_args
        run_bootstrap "${ARGS[@]}" --runner-user "$user"
        assert_ne "$RC" 0 "exit code for $user"
        assert_has "$T/stderr" "flag --runner-user $user: running the runner as another user needs root (this is tester)"
        assert_never "aws ssm get-parameter"
        assert_never "useradd"
        assert_never "runner "
        assert_shut_down_last
    done
}

test_sudoers_refused_by_visudo_aborts() {
    export FAKE_USER=root
    printf '#!/usr/bin/env bash\necho "visudo: syntax error" >&2\nexit 1\n' >"$T/bin/visudo"
    default_args
    run_bootstrap "${ARGS[@]}" --runner-user runner
    assert_ne "$RC" 0 "exit code"
    assert_has "$T/stderr" "visudo refused"
    [[ -z "$(ls -A "$T/sudoers.d" 2>/dev/null)" ]] || fail "a refused sudoers file was left: $(ls -A "$T/sudoers.d")"
    assert_never "runner "
    assert_shut_down_last
}

# render_document KEY=VALUE...: the document's runCommand with {{ KEY }}
# replaced (every other parameter gets its default), into $T/ssm-command.sh.
render_document() {
    awk '/^ *runCommand:/ { rc = 1; next }
        rc && /^ *- \|/ { blk = 1; next }
        blk { if ($0 == "" || $0 ~ /^          /) { sub(/^          /, ""); print } else exit }' \
        "$DOC" >"$T/ssm-command.sh"
    local kv k v
    for kv in "$@" runnerArch=x64 runnerSha256= allowUnverifiedRunner=false runnerUser=runner startupScriptKey= region=; do
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
    for p in runnerName jitParameter bucket scriptKey runnerVersion runnerArch runnerSha256 \
        allowUnverifiedRunner runnerUser startupScriptKey maxRunTimeSecs region; do
        grep -q "^  $p:\$" "$DOC" || fail "parameter $p not declared"
    done
    # the defaults render_document gives: fail closed, a non-root runner user
    assert_eq "$(awk '/^  allowUnverifiedRunner:$/ { p = 1 } p && /default:/ { print; exit }' "$DOC")" '    default: "false"' "allowUnverifiedRunner's default"
    assert_eq "$(awk '/^  runnerUser:$/ { p = 1 } p && /default:/ { print; exit }' "$DOC")" '    default: "runner"' "runnerUser's default"
    # SSM runs the document as root
    export FAKE_USER=root
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
    assert_has "$T/calls.log" "runner-id user=runner home=$T/homes/runner USER=runner allow_root="
    assert_lacks "$T/calls.log" "allow_root=1"
    assert_shut_down_last
    assert_no_secret_output

    # runnerUser root, allowUnverifiedRunner true: a root runner, an unverified tarball
    : >"$T/calls.log"
    put_parameter
    rm -rf -- "$T/s3/$BUCKET/runner-cache/"*.sha256 "$T/home/runner"
    render_document runnerName="$RUNNER_NAME" jitParameter="$PARAM" bucket="$BUCKET" \
        scriptKey=spotrunner/bootstrap.sh runnerVersion="$VERSION" maxRunTimeSecs=120 \
        runnerUser=root allowUnverifiedRunner=true
    RUN_SCRIPT="$T/ssm-command.sh" run_bootstrap --unused
    assert_eq "$RC" 0 "exit code (root, unverified)"
    assert_has "$T/calls.log" "runner-id user=root home="
    assert_has "$T/calls.log" "allow_root=1"
    assert_has "$T/stderr" "installing it unverified"

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

# --- one run per VM (SSM may deliver the command twice) ------------------------

# the two runs' roles, from their logs: sets LEADER and FOLLOWER (names of
# start_bootstrap runs); exactly one must have refused to run.
find_roles() { # NAME_A NAME_B
    local a="$1" b="$2" refused='msg="already bootstrapped on this VM by '
    LEADER="" FOLLOWER=""
    if grep -qF -- "$refused" "$T/$a.stderr"; then FOLLOWER="$a" LEADER="$b"; fi
    if grep -qF -- "$refused" "$T/$b.stderr"; then
        [[ -z "$FOLLOWER" ]] || fail "both runs refused to run"
        FOLLOWER="$b" LEADER="$a"
    fi
    [[ -n "$FOLLOWER" ]] || fail "neither run refused: two runners on one VM"
}

# the checks shared by the concurrent tests, once both runs ended; RUNNER_RC
# is what the runner exited with.
assert_one_runner_follower_waited() {
    local runner_rc="$1" bootstrap_pid
    find_roles a b
    assert_eq "$(cat "$T/$LEADER.rc")" "$runner_rc" "first run's exit code"
    assert_eq "$(cat "$T/$FOLLOWER.rc")" "$runner_rc" "second run's exit code (the first's)"
    assert_eq "$(count_calls 'runner argv')" 1 "runners started"
    assert_eq "$(count_calls 'aws ssm get-parameter')" 1 "JIT parameter reads"
    assert_eq "$(count_calls 'aws ssm delete-parameter')" 1 "JIT parameter deletes"
    assert_eq "$(count_calls 'shutdown -h +')" 1 "safety timers armed"
    assert_eq "$(count_calls 'shutdown -h now')" 1 "shutdown -h now calls"
    # every shutdown call came from the first run (the runner's parent)
    bootstrap_pid="$(awk '/^runner-ppid / { print $2; exit }' "$T/calls.log")"
    assert_eq "$(sort -u "$T/shutdown-callers")" "$bootstrap_pid" "shutdown callers"
    assert_lacks "$T/$FOLLOWER.stderr" "shutting down"
    assert_lacks "$T/$FOLLOWER.stderr" "safety timer"
    assert_lacks "$T/$FOLLOWER.stderr" "JIT config"
    assert_has "$T/$FOLLOWER.stderr" 'spotrunner-bootstrap: level=warn runner=ci-linux-42-1 msg="already bootstrapped on this VM by '
    assert_has "$T/$FOLLOWER.stderr" "; not running a second runner"
    assert_has "$T/$FOLLOWER.stderr" "ended with exit_code=$runner_rc; exiting with it"
    # the second run ended only once the runner had ended
    assert_before "runner-exit $runner_rc" "bootstrap-exit $FOLLOWER $runner_rc"
    local f
    for f in a.stdout a.stderr b.stdout b.stderr; do
        assert_lacks "$T/$f" "$JIT_VALUE"
    done
}

test_two_concurrent_runs_start_one_runner() {
    export SPOTRUNNER_STATE_DIR="$T/vm-state" FAKE_RUNNER_MODE=gate FAKE_RUNNER_GATE="$T/gate"
    local round
    for round in 1 2 3 4 5; do
        rm -rf -- "$SPOTRUNNER_STATE_DIR" "$T/gate" "$T/shutdown-callers"
        : >"$T/calls.log"
        put_parameter
        # both start at the same instant
        hold_barrier
        start_bootstrap a
        start_bootstrap b
        sleep 0.2
        release_barrier
        # the runner runs while the other run is already waiting
        wait_for "$T/calls.log" "runner-ppid"
        wait_for "$T/a.stderr" "msg="
        wait_for "$T/b.stderr" "msg="
        find_roles a b
        wait_for "$T/$FOLLOWER.stderr" "not running a second runner"
        sleep 0.3
        [[ ! -e "$T/$FOLLOWER.rc" ]] || fail "round $round: the second run ended while the runner ran"
        touch "$T/gate"
        wait
        assert_one_runner_follower_waited 0
    done
}

test_second_run_reports_first_runs_failure() {
    export SPOTRUNNER_STATE_DIR="$T/vm-state" FAKE_RUNNER_MODE=gate FAKE_RUNNER_GATE="$T/gate" FAKE_RUNNER_EXIT=3
    start_bootstrap a
    wait_for "$T/calls.log" "runner-ppid"
    start_bootstrap b
    wait_for "$T/b.stderr" "not running a second runner"
    sleep 0.3
    [[ ! -e "$T/b.rc" ]] || fail "the second run ended while the runner ran"
    touch "$T/gate"
    wait
    assert_one_runner_follower_waited 3
    assert_eq "$LEADER" a "first run"
    assert_has "$T/b.stderr" "level=warn runner=ci-linux-42-1 msg=\"the first run (pid "
    assert_eq "$(cat "$SPOTRUNNER_STATE_DIR/bootstrap.exit-status")" 3 "recorded exit code"
}

test_second_run_after_first_finished_exits_at_once() {
    export FAKE_RUNNER_EXIT=7
    KEEP_STATE=1 run_bootstrap
    assert_eq "$RC" 7 "first run's exit code"
    put_parameter
    : >"$T/calls.log"
    rm -f -- "$T/shutdown-callers"
    export FAKE_RUNNER_EXIT=0
    local start=$SECONDS
    KEEP_STATE=1 run_bootstrap
    assert_eq "$RC" 7 "second run's exit code (the first's)"
    [[ $((SECONDS - start)) -le 5 ]] || fail "the second run did not end at once"
    assert_eq "$(cat "$T/calls.log")" "" "calls by the second run (aws, shutdown, runner)"
    [[ ! -e "$T/shutdown-callers" ]] || fail "the second run called shutdown"
    [[ -f "$T/params/${PARAM//\//_}" ]] || fail "the second run deleted the JIT parameter"
    assert_has "$T/stderr" 'level=warn runner=ci-linux-42-1 msg="already bootstrapped on this VM by pid '
    assert_has "$T/stderr" "ended with exit_code=7; exiting with it"
    # the default state dir: under SPOTRUNNER_HOME
    assert_has "$T/home/state/bootstrap.marker" "pid="
    assert_has "$T/home/state/bootstrap.marker" "runner=$RUNNER_NAME"
    assert_eq "$(cat "$T/home/state/bootstrap.exit-status")" 7 "recorded exit code"
}

test_second_run_after_first_was_killed_exits_1() {
    # marker of this boot, no exit code, nobody holds the lock
    mkdir -p "$T/home/state"
    printf 'pid=12345\nboot_id=%s\n' "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)" \
        >"$T/home/state/bootstrap.marker"
    KEEP_STATE=1 run_bootstrap
    assert_eq "$RC" 1 "exit code"
    assert_eq "$(cat "$T/calls.log")" "" "calls (aws, shutdown, runner)"
    assert_has "$T/stderr" "already bootstrapped on this VM by pid 12345"
    assert_has "$T/stderr" "ended without recording its exit code"
}

test_marker_of_another_boot_is_ignored() {
    mkdir -p "$T/home/state"
    printf 'pid=12345\nboot_id=another-boot\n' >"$T/home/state/bootstrap.marker"
    echo 9 >"$T/home/state/bootstrap.exit-status"
    KEEP_STATE=1 run_bootstrap
    assert_eq "$RC" 0 "exit code"
    assert_has "$T/calls.log" "runner-jit ok"
    assert_shut_down_last
    assert_has "$T/stderr" "ignoring $T/home/state/bootstrap.marker of another boot (pid 12345)"
    assert_lacks "$T/home/state/bootstrap.marker" "pid=12345"
    assert_eq "$(cat "$T/home/state/bootstrap.exit-status")" 0 "recorded exit code"
}

test_unusable_state_dir_fails_safe() {
    export SPOTRUNNER_STATE_DIR="$T/not-a-dir"
    : >"$SPOTRUNNER_STATE_DIR"
    run_bootstrap
    assert_ne "$RC" 0 "exit code"
    assert_eq "$(grep '^shutdown' "$T/calls.log")" "shutdown -h now" "shutdown calls"
    assert_never "aws "
    assert_never "runner "
    assert_has "$T/stderr" "cannot open the lock file $T/not-a-dir/bootstrap.lock"
}

test_ssm_command_id_in_marker() {
    # As the SSM agent runs it: ssm-document-worker CMD_ID ->
    # sh -c .../document/orchestration/CMD_ID/STEP/_script.sh -> bootstrap.sh
    local cmd_id=0b9f2c3e-1d2a-4c5b-8e7f-0123456789ab
    local orch="$T/var/lib/amazon/ssm/i-0abc/document/orchestration/$cmd_id/bootstrapRunner"
    mkdir -p "$orch" "$T/s3/$BUCKET/spotrunner"
    cp "$SCRIPT" "$T/s3/$BUCKET/spotrunner/bootstrap.sh"
    render_document runnerName="$RUNNER_NAME" jitParameter="$PARAM" bucket="$BUCKET" \
        scriptKey=spotrunner/bootstrap.sh runnerVersion="$VERSION" maxRunTimeSecs=120
    cp "$T/ssm-command.sh" "$orch/_script.sh"
    chmod +x "$orch/_script.sh"
    # shellcheck disable=SC2016  # expanded by the fake worker, not here
    printf '#!/usr/bin/env bash\n"$FAKE_WORKER_SHELL" -c "$ORCH_SCRIPT"\n' >"$T/bin/ssm-document-worker"
    chmod +x "$T/bin/ssm-document-worker"
    export ORCH_SCRIPT="$orch/_script.sh" AWS_SSM_INSTANCE_ID=i-0abc FAKE_USER=root
    # dash's `sh -c` forks (the id is in its command line); bash's execs (the
    # id is the worker's argument)
    for FAKE_WORKER_SHELL in sh bash; do
        export FAKE_WORKER_SHELL
        put_parameter
        RUN_SCRIPT="$T/bin/ssm-document-worker" run_bootstrap "$cmd_id"
        assert_eq "$RC" 0 "exit code ($FAKE_WORKER_SHELL -c)"
        assert_has "$T/home/state/bootstrap.marker" "ssm_command_id=$cmd_id"
        assert_has "$T/home/state/bootstrap.marker" "ssm_instance_id=i-0abc"
    done
    KEEP_STATE=1 run_bootstrap
    assert_eq "$RC" 0 "second run's exit code"
    assert_has "$T/stderr" "already bootstrapped on this VM by pid "
    assert_has "$T/stderr" ", SSM command $cmd_id, started "
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
    SPOTRUNNER_NO_SHUTDOWN SPOTRUNNER_STATE_DIR AWS_SSM_INSTANCE_ID BASH_FLAGS OUT KEEP_STATE

for t in $(declare -F | awk '{print $3}' | grep '^test_' | sed 's/^test_//'); do
    run_test "$t"
done

echo "$PASSED passed, $FAILED failed"
[[ "$FAILED" == 0 ]]
