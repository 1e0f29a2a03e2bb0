#!/usr/bin/env bash
# spotrunner on-instance bootstrap: turns a fresh VM into exactly one
# single-use (JIT) GitHub Actions runner, then shuts the VM down.
#
# Run by the spotrunner SSM document (as root), or by the local process
# backend (as a normal user, with SPOTRUNNER_NO_SHUTDOWN=1). See README.md.
#
# The runner tarball is installed only with a verified SHA-256
# (--runner-sha256, else the runner cache's .sha256 sidecar): a job of a pool
# with runner_cache_upload may have planted a tarball for a version not yet
# cached. Without one: no install, unless --allow-unverified-runner true (a
# pool that pins its version and opts out, see README.md).
#
# The runner runs as --runner-user (default: the user running this script).
# When that is another user, this script (root) creates it if missing, gives
# it passwordless sudo and the runner and work directories, and starts the
# runner as it (setpriv); RUNNER_ALLOW_RUNASROOT only when the runner is root.
#
# The JIT config is a credential: it lives only in a shell variable (never
# exported, never echoed, never written to disk by this script) and reaches
# the runner in its environment as ACTIONS_RUNNER_INPUT_JITCONFIG, never on a
# command line (/proc/PID/cmdline is readable by every user on the VM; the
# environment only by the process's owner). The actions runner reads
# ACTIONS_RUNNER_INPUT_<ARG> like `--<arg>` and removes it from its own
# environment before it starts a job (Runner.Listener/CommandSettings.cs).
#
# One run per VM. SSM SendCommand is not idempotent and SSM may deliver a
# command twice, so this script may be started twice on one VM, even at the
# same instant. The first run takes an exclusive lock (flock) on
# $STATE_DIR/bootstrap.lock and writes $STATE_DIR/bootstrap.marker (its pid,
# SSM command id, boot id) before it arms the safety timer or touches the JIT
# parameter; it holds the lock until it ends and then records its exit code in
# $STATE_DIR/bootstrap.exit-status. A later run (lock held, or marker of this
# boot present) logs a warning, installs no shutdown trap, never reads or
# deletes the JIT parameter, never touches the runner: it waits for the first
# run to end (blocks on the lock) and exits with the first run's exit code (at
# once if the first run already ended). So whichever of the two SSM commands
# the control plane follows, its terminal status arrives when the runner
# really ended, with the runner's exit code. STATE_DIR: $SPOTRUNNER_STATE_DIR,
# else $SPOTRUNNER_HOME/state if SPOTRUNNER_HOME is set (the local backend,
# tests: one per instance), else /var/lib/spotrunner.

# Never trace: `bash -x bootstrap.sh` would print the JIT config.
{ set +x; } 2>/dev/null
set -euo pipefail

readonly PROG="spotrunner-bootstrap"

RUNNER_NAME=""
JIT_PARAMETER=""
BUCKET=""
RUNNER_VERSION=""
RUNNER_ARCH="x64"
RUNNER_SHA256=""
ALLOW_UNVERIFIED=""
RUNNER_USER=""
STARTUP_SCRIPT_KEY=""
MAX_RUN_TIME_SECS=""
REGION=""

JIT=""
TMP_DIR=""
RUNNER_PID=""
SHUTDOWN_DONE=0
FLAG_ERROR=""

# One run per VM (see the header). The lock is held on fd 9, which every
# long-lived child (runner, startup script, shutdown) gets closed (`9>&-`).
STATE_DIR=""
MARKER=""
STATUS_FILE=""
LOCK_HELD=0
ONCE_ERROR=""
BOOT_ID="$(cat /proc/sys/kernel/random/boot_id 2>/dev/null || true)"

# --- logging ---------------------------------------------------------------

# log LEVEL MSG... -> `spotrunner-bootstrap: level=L runner=NAME msg="..."` on stderr.
log() {
    local level="$1"
    shift
    local msg="$*"
    msg="${msg//\\/\\\\}"
    msg="${msg//\"/\\\"}"
    msg="${msg//$'\n'/ }"
    printf '%s: level=%s runner=%s msg="%s"\n' \
        "$PROG" "$level" "${RUNNER_NAME:--}" "$msg" >&2
}
info() { log info "$@"; }
warn() { log warn "$@"; }
error() { log error "$@"; }

# die MSG... -> log an error and exit non-zero (the EXIT trap shuts down).
die() {
    error "$@"
    exit 1
}

usage() {
    cat >&2 <<'EOF'
usage: bootstrap.sh --runner-name NAME --jit-parameter PARAM_NAME --bucket BUCKET
                    --runner-version VER [--runner-arch x64|arm64] [--runner-sha256 HEX]
                    [--allow-unverified-runner true|false] [--runner-user NAME]
                    [--startup-script-key KEY] --max-run-time-secs N [--region R]
EOF
}

# --- exit / shutdown guarantees -------------------------------------------

# shellcheck disable=SC2317  # invoked from traps
shutdown_now() {
    if [[ "${SPOTRUNNER_NO_SHUTDOWN:-0}" == "1" ]]; then
        return 0
    fi
    if [[ "$SHUTDOWN_DONE" == "1" ]]; then
        return 0
    fi
    SHUTDOWN_DONE=1
    info "shutting down now"
    if ! shutdown -h now 9>&-; then
        error "shutdown -h now failed; relying on the safety timer and the control plane"
    fi
}

# record_exit_status RC: the first run's exit code for later runs, then
# release the lock so that they end now (not when the VM is gone).
# shellcheck disable=SC2317  # invoked from traps
record_exit_status() {
    if ! { printf '%s\n' "$1" >"$STATUS_FILE.tmp" && mv -f -- "$STATUS_FILE.tmp" "$STATUS_FILE"; } 2>/dev/null; then
        warn "could not record the exit code in $STATUS_FILE"
    fi
    flock -u 9 2>/dev/null || true
    LOCK_HELD=0
}

# shellcheck disable=SC2317  # invoked from traps
on_exit() {
    local rc=$?
    set +e
    trap - EXIT
    JIT=""
    if [[ -n "$RUNNER_PID" ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
        kill -TERM "$RUNNER_PID" 2>/dev/null
    fi
    if [[ -n "$TMP_DIR" && -d "$TMP_DIR" ]]; then
        rm -rf -- "$TMP_DIR"
    fi
    if [[ "$rc" == "0" ]]; then
        info "bootstrap finished exit_code=0"
    else
        error "bootstrap finished exit_code=$rc"
    fi
    if [[ "$LOCK_HELD" == "1" ]]; then
        record_exit_status "$rc"
    fi
    shutdown_now
    exit "$rc"
}

# on_signal NAME CODE: stop the runner (it cancels its job on TERM), then exit
# with 128+signo; the EXIT trap then shuts down.
# shellcheck disable=SC2317  # invoked from traps
on_signal() {
    local sig="$1" code="$2"
    trap - TERM INT HUP
    warn "received SIG$sig, stopping"
    if [[ -n "$RUNNER_PID" ]] && kill -0 "$RUNNER_PID" 2>/dev/null; then
        kill -TERM "$RUNNER_PID" 2>/dev/null || true
        wait "$RUNNER_PID" 2>/dev/null || true
    fi
    RUNNER_PID=""
    exit "$code"
}

# --- flags (parsed first, checked once the traps are armed) ------------------

# parse_flags ARGS...: sets the flag variables; the first problem goes to
# FLAG_ERROR (reported by the first run only, see "one run per VM").
parse_flags() {
    local flag value
    while [[ $# -gt 0 ]]; do
        flag="$1"
        value=""
        case "$flag" in
            --*=*)
                value="${flag#*=}"
                flag="${flag%%=*}"
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            --*)
                if [[ $# -lt 2 ]]; then
                    FLAG_ERROR="flag $flag needs a value"
                    return 0
                fi
                value="$2"
                shift 2
                ;;
            *)
                FLAG_ERROR="unexpected argument: $flag"
                return 0
                ;;
        esac
        case "$flag" in
            --runner-name) RUNNER_NAME="$value" ;;
            --jit-parameter) JIT_PARAMETER="$value" ;;
            --bucket) BUCKET="$value" ;;
            --runner-version) RUNNER_VERSION="$value" ;;
            --runner-arch) RUNNER_ARCH="$value" ;;
            --runner-sha256) RUNNER_SHA256="$value" ;;
            --allow-unverified-runner) ALLOW_UNVERIFIED="$value" ;;
            --runner-user) RUNNER_USER="$value" ;;
            --startup-script-key) STARTUP_SCRIPT_KEY="$value" ;;
            --max-run-time-secs) MAX_RUN_TIME_SECS="$value" ;;
            --region) REGION="$value" ;;
            *)
                FLAG_ERROR="unknown flag: $flag"
                return 0
                ;;
        esac
    done
}

parse_flags "$@"

# --- 1. one run per VM (README.md) ---------------------------------------------------------

if [[ -n "${SPOTRUNNER_STATE_DIR:-}" ]]; then
    STATE_DIR="$SPOTRUNNER_STATE_DIR"
elif [[ -n "${SPOTRUNNER_HOME:-}" ]]; then
    STATE_DIR="$SPOTRUNNER_HOME/state"
else
    STATE_DIR="/var/lib/spotrunner"
fi
MARKER="$STATE_DIR/bootstrap.marker"
STATUS_FILE="$STATE_DIR/bootstrap.exit-status"

# marker_get KEY: the value of the marker's KEY=... line (empty if none).
marker_get() {
    local line
    [[ -f "$MARKER" ]] || return 0
    while IFS= read -r line; do
        if [[ "$line" == "$1="* ]]; then
            printf '%s' "${line#*=}"
            return 0
        fi
    done <"$MARKER" 2>/dev/null
    return 0
}

# first_run: who holds (or held) this VM, from the marker.
first_run() {
    local pid cmd at
    pid="$(marker_get pid)"
    cmd="$(marker_get ssm_command_id)"
    at="$(marker_get started_at)"
    if [[ -z "$pid" ]]; then
        printf 'a concurrent run'
        return 0
    fi
    printf 'pid %s' "$pid"
    if [[ -n "$cmd" ]]; then printf ', SSM command %s' "$cmd"; fi
    if [[ -n "$at" ]]; then printf ', started %s' "$at"; fi
}

# ssm_command_id: the id of the SSM command that runs this script, or empty
# (best effort, for logs). The agent gives a script no command id (only
# AWS_SSM_INSTANCE_ID, AWS_SSM_REGION_NAME, AWS_SSM_PLATFORM_NAME/VERSION:
# agent/executers/executers.go), but it runs the document's script as
# `sh -c .../document/orchestration/<command-id>/<step>/_script.sh` from
# `ssm-document-worker <command-id>` (agent/runcommand/utils.go,
# agent/framework/processor/executer/outofproc/master.go): look for either
# in the command lines of our ancestors.
ssm_command_id() {
    local pid="$PPID" depth arg prev stat
    local re='/document/orchestration/([A-Za-z0-9-]{1,64})/'
    for ((depth = 0; depth < 6; depth++)); do
        [[ "$pid" =~ ^[0-9]+$ && "$pid" -gt 1 && -r "/proc/$pid/cmdline" ]] || return 0
        prev=""
        while IFS= read -r arg; do
            if [[ "$arg" =~ $re ]]; then
                printf '%s' "${BASH_REMATCH[1]}"
                return 0
            fi
            if [[ "${prev##*/}" == "ssm-document-worker" && "$arg" =~ ^[A-Za-z0-9-]{1,64}$ ]]; then
                printf '%s' "$arg"
                return 0
            fi
            prev="$arg"
        done < <(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null || true)
        stat="$(cat "/proc/$pid/stat" 2>/dev/null || true)"
        stat="${stat##*) }" # after "PID (COMM) ": STATE PPID ...
        read -r _ pid _ <<<"$stat" || return 0
    done
    return 0
}

# later_run: this VM already has (or had) its run. Never returns, never shuts
# down, never touches the JIT parameter or the runner: wait for the first run
# to end, then exit with its exit code.
later_run() {
    local who status then="waiting for that run to end, then exiting with its exit code"
    who="$(first_run)"
    if [[ "$LOCK_HELD" == "1" ]]; then then="that run has ended"; fi
    warn "already bootstrapped on this VM by $who; not running a second runner ($then)"
    if [[ "$LOCK_HELD" != "1" ]]; then
        if ! flock 9; then
            error "could not wait for the first run (flock on $STATE_DIR/bootstrap.lock failed)"
            exit 1
        fi
        who="$(first_run)"
    fi
    status="$(cat "$STATUS_FILE" 2>/dev/null || true)"
    if [[ "$status" =~ ^[0-9]{1,3}$ ]]; then
        status="$((10#$status))"
        log "$([[ "$status" == 0 ]] && echo info || echo warn)" \
            "the first run ($who) ended with exit_code=$status; exiting with it"
        exit "$status"
    fi
    error "the first run ($who) ended without recording its exit code (killed?); exiting 1"
    exit 1
}

if ! command -v flock >/dev/null 2>&1; then
    ONCE_ERROR="flock (util-linux) not found: cannot make sure that this VM runs one runner only"
elif ! mkdir -p -- "$STATE_DIR" 2>/dev/null || ! { exec 9>>"$STATE_DIR/bootstrap.lock"; } 2>/dev/null; then
    ONCE_ERROR="cannot open the lock file $STATE_DIR/bootstrap.lock (SPOTRUNNER_STATE_DIR)"
else
    lock_rc=0
    flock -n -E 75 9 || lock_rc=$?
    if [[ "$lock_rc" == "75" ]]; then
        later_run # another run holds the lock
    elif [[ "$lock_rc" != "0" ]]; then
        ONCE_ERROR="flock on $STATE_DIR/bootstrap.lock failed with exit code $lock_rc"
    else
        LOCK_HELD=1
        if [[ -f "$MARKER" ]]; then
            if [[ "$(marker_get boot_id)" == "$BOOT_ID" ]]; then
                later_run # the first run already ended
            fi
            # Not this boot's: the VM rebooted (its runner is gone), or its
            # image was made from a bootstrapped VM.
            warn "ignoring $MARKER of another boot ($(first_run))"
        fi
        rm -f -- "$STATUS_FILE"
        if ! {
            printf 'pid=%s\n' "$$"
            printf 'started_at=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
            printf 'boot_id=%s\n' "$BOOT_ID"
            printf 'runner=%s\n' "${RUNNER_NAME//$'\n'/ }"
            printf 'ssm_command_id=%s\n' "$(ssm_command_id)"
            printf 'ssm_instance_id=%s\n' "${AWS_SSM_INSTANCE_ID:-}"
        } >"$MARKER.tmp" 2>/dev/null || ! mv -f -- "$MARKER.tmp" "$MARKER"; then
            ONCE_ERROR="cannot write $MARKER"
        fi
    fi
    unset lock_rc
fi

# The first run from here on (or a run that cannot tell: it fails safe).
trap on_exit EXIT
trap 'on_signal TERM 143' TERM
trap 'on_signal INT 130' INT
trap 'on_signal HUP 129' HUP

if [[ -n "$ONCE_ERROR" ]]; then
    die "$ONCE_ERROR"
fi
if [[ "$LOCK_HELD" == "1" ]]; then
    info "first bootstrap on this VM (state in $STATE_DIR)"
fi

# --- 2. flag checks ----------------------------------------------------------------

if [[ -n "$FLAG_ERROR" ]]; then
    usage
    die "$FLAG_ERROR"
fi

missing=()
[[ -n "$RUNNER_NAME" ]] || missing+=(--runner-name)
[[ -n "$JIT_PARAMETER" ]] || missing+=(--jit-parameter)
[[ -n "$BUCKET" ]] || missing+=(--bucket)
[[ -n "$RUNNER_VERSION" ]] || missing+=(--runner-version)
[[ -n "$MAX_RUN_TIME_SECS" ]] || missing+=(--max-run-time-secs)
if [[ ${#missing[@]} -gt 0 ]]; then
    usage
    die "missing required flag(s): ${missing[*]}"
fi
unset missing

if ! [[ "$MAX_RUN_TIME_SECS" =~ ^[0-9]+$ ]] || [[ "$((10#$MAX_RUN_TIME_SECS))" -le 0 ]]; then
    die "flag --max-run-time-secs must be a positive integer, got '$MAX_RUN_TIME_SECS'"
fi
MAX_RUN_TIME_SECS="$((10#$MAX_RUN_TIME_SECS))"
case "$RUNNER_ARCH" in
    x64 | arm64) ;;
    *) die "flag --runner-arch must be x64 or arm64, got '$RUNNER_ARCH'" ;;
esac
if ! [[ "$RUNNER_SHA256" =~ ^([0-9a-f]{64})?$ ]]; then
    die "flag --runner-sha256 must be 64 lower-case hex digits (or empty), got '$RUNNER_SHA256'"
fi
RUNNER_VERSION="${RUNNER_VERSION#v}"
if ! [[ "$RUNNER_VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
    die "flag --runner-version must look like 2.317.0, got '$RUNNER_VERSION'"
fi
case "$ALLOW_UNVERIFIED" in
    true) ;;
    false | "") ALLOW_UNVERIFIED=false ;;
    *) die "flag --allow-unverified-runner must be true or false, got '$ALLOW_UNVERIFIED'" ;;
esac

# The runner's user (see the header). RUN_AS_OTHER=1: this script (root)
# switches to it; else the runner runs as this script's user.
CURRENT_UID="$(id -u)" || die "cannot tell which user runs this script (id -u)"
CURRENT_USER="$(id -un 2>/dev/null)" || CURRENT_USER="" # a uid without a name
RUN_AS_OTHER=0
if [[ -z "$RUNNER_USER" ]]; then
    RUNNER_USER="${CURRENT_USER:-uid $CURRENT_UID}"
elif ! [[ "$RUNNER_USER" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
    die "flag --runner-user must be a Linux user name ([a-z_][a-z0-9_-], at most 32 characters), got '$RUNNER_USER'"
elif [[ "$RUNNER_USER" != "$CURRENT_USER" ]]; then
    if [[ "$CURRENT_UID" != "0" ]]; then
        die "flag --runner-user $RUNNER_USER: running the runner as another user needs root (this is ${CURRENT_USER:-uid $CURRENT_UID})"
    fi
    if [[ "$RUNNER_USER" != root ]]; then
        RUN_AS_OTHER=1
        for tool in setpriv useradd getent; do
            command -v "$tool" >/dev/null 2>&1 || die "flag --runner-user $RUNNER_USER: $tool not found (setpriv: util-linux, useradd: shadow-utils/passwd)"
        done
        unset tool
    fi
fi

SPOTRUNNER_HOME="${SPOTRUNNER_HOME:-/opt/spotrunner}"
RUNNER_DIR="${SPOTRUNNER_RUNNER_DIR:-$SPOTRUNNER_HOME/runner}"
WORK_DIR="${SPOTRUNNER_WORK_DIR:-$SPOTRUNNER_HOME/work}"

# `--region R` for every aws call when a region was given. Expanded with
# ${AWS_ARGS[@]+...} so an empty array is fine under `set -u` on bash < 4.4.
AWS_ARGS=()
if [[ -n "$REGION" ]]; then
    AWS_ARGS=(--region "$REGION")
fi

aws_() {
    aws ${AWS_ARGS[@]+"${AWS_ARGS[@]}"} "$@"
}

# --- 3. safety timer, before anything else the first run does ---------------

if [[ "${SPOTRUNNER_NO_SHUTDOWN:-0}" == "1" ]]; then
    info "SPOTRUNNER_NO_SHUTDOWN=1: no safety timer, no shutdown at exit"
else
    minutes=$(((MAX_RUN_TIME_SECS + 59) / 60))
    if ! shutdown -h "+$minutes" >/dev/null 9>&-; then
        die "could not arm the safety timer (shutdown -h +$minutes)"
    fi
    info "safety timer armed: shutdown in $minutes minute(s)"
    unset minutes
fi

TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/spotrunner-bootstrap.XXXXXX")"

# --- 4. JIT config: read, then delete at once --------------------------------

info "reading JIT config from SSM parameter $JIT_PARAMETER"
if ! JIT="$(aws_ ssm get-parameter --name "$JIT_PARAMETER" --with-decryption \
    --query Parameter.Value --output text)"; then
    JIT=""
    die "could not read SSM parameter $JIT_PARAMETER"
fi
if ! aws_ ssm delete-parameter --name "$JIT_PARAMETER" >/dev/null; then
    warn "could not delete SSM parameter $JIT_PARAMETER; the control plane will"
else
    info "deleted SSM parameter $JIT_PARAMETER"
fi
if [[ -z "$JIT" || "$JIT" == "None" ]]; then
    JIT=""
    die "SSM parameter $JIT_PARAMETER is empty"
fi

# --- 5. runner binaries -------------------------------------------------------

mkdir -p -- "$RUNNER_DIR" "$WORK_DIR"

if [[ -n "${SPOTRUNNER_RUNNER_CMD:-}" ]]; then
    info "SPOTRUNNER_RUNNER_CMD is set; not installing the runner"
elif [[ -f "$RUNNER_DIR/run.sh" ]]; then
    info "runner already present in $RUNNER_DIR"
else
    tarball="actions-runner-linux-$RUNNER_ARCH-$RUNNER_VERSION.tar.gz"
    cache_url="s3://$BUCKET/runner-cache/$tarball"
    local_tarball="$TMP_DIR/$tarball"
    # The SHA-256 to check the tarball against: --runner-sha256 (what the
    # control plane verified against GitHub's published one), else the
    # cache's .sha256 sidecar (written by the runner-cache task after it
    # verified the tarball), else none (a warning: unverified).
    expected_sha="$RUNNER_SHA256"
    sha_source="--runner-sha256"
    if [[ -z "$expected_sha" ]] &&
        aws_ s3 cp --only-show-errors "$cache_url.sha256" "$TMP_DIR/$tarball.sha256" 2>/dev/null; then
        expected_sha="$(head -c 64 -- "$TMP_DIR/$tarball.sha256" | tr 'A-F' 'a-f')"
        sha_source="$cache_url.sha256"
        if ! [[ "$expected_sha" =~ ^[0-9a-f]{64}$ ]]; then
            die "the runner cache's checksum $cache_url.sha256 is not a SHA-256; refusing the runner"
        fi
    fi
    # Fail closed: no checksum to verify against, no install (a job of a pool
    # with runner_cache_upload may have planted this version's tarball).
    if [[ -z "$expected_sha" && "$ALLOW_UNVERIFIED" != true ]]; then
        die "runner $RUNNER_VERSION ($RUNNER_ARCH): no verified SHA-256 (no --runner-sha256, no $cache_url.sha256): refusing to install it; let the runner cache verify this version, or pin runner_version and set the pool's allow_unverified_runner"
    elif [[ -z "$expected_sha" ]]; then
        warn "runner $RUNNER_VERSION ($RUNNER_ARCH): no verified SHA-256; installing it unverified (--allow-unverified-runner true)"
    fi
    from_github=0
    if aws_ s3 cp --only-show-errors "$cache_url" "$local_tarball"; then
        info "runner $RUNNER_VERSION ($RUNNER_ARCH) taken from the S3 cache $cache_url"
    else
        github_url="https://github.com/actions/runner/releases/download/v$RUNNER_VERSION/$tarball"
        warn "runner not in the S3 cache $cache_url; downloading $github_url"
        rm -f -- "$local_tarball"
        if ! curl -fsSL --retry 3 --retry-delay 2 -o "$local_tarball" "$github_url"; then
            die "could not download the runner from $github_url"
        fi
        from_github=1
    fi
    got_sha="$(sha256sum -- "$local_tarball" | cut -d' ' -f1)"
    if [[ -z "$expected_sha" ]]; then
        warn "runner $tarball not verified: installing sha256 $got_sha"
    elif [[ "$got_sha" != "$expected_sha" ]]; then
        rm -f -- "$local_tarball"
        die "runner $tarball refused: sha256 $got_sha is not the expected $expected_sha (from $sha_source)"
    else
        info "runner $tarball verified: sha256 $got_sha (from $sha_source)"
    fi
    # Only a verified tarball, and only as a new object (If-None-Match: *):
    # the runner role may not replace a cached tarball (terraform/ec2.tf
    # FillRunnerCache), so a job can never swap the runner of later VMs. Lost
    # race → a warning.
    if [[ "$from_github" == 1 && -z "$expected_sha" ]]; then
        warn "not uploading an unverified runner to the S3 cache $cache_url"
    elif [[ "$from_github" == 1 ]]; then
        if aws_ s3api put-object --bucket "$BUCKET" --key "runner-cache/$tarball" \
            --body "$local_tarball" --if-none-match '*' >/dev/null; then
            info "uploaded runner to the S3 cache $cache_url"
        else
            warn "could not upload runner to the S3 cache $cache_url (continuing)"
        fi
    fi
    if ! tar -xzf "$local_tarball" -C "$RUNNER_DIR"; then
        die "could not extract $tarball into $RUNNER_DIR"
    fi
    rm -f -- "$local_tarball"
    if [[ ! -f "$RUNNER_DIR/run.sh" ]]; then
        die "$tarball has no run.sh"
    fi
    unset tarball cache_url local_tarball github_url expected_sha sha_source got_sha from_github
fi

# --- 6. the runner's user ------------------------------------------------------

# passwd_field USER N: field N of USER's passwd entry (empty if none).
passwd_field() {
    local entry
    entry="$(getent passwd "$1" 2>/dev/null)" || return 0
    cut -d: -f"$2" <<<"$entry"
}

# grant_sudo USER: passwordless sudo for USER, as on GitHub's hosted
# runners, in its own sudoers.d file (checked by visudo when installed).
grant_sudo() {
    local user="$1" dir="${SPOTRUNNER_SUDOERS_DIR:-/etc/sudoers.d}"
    local file="$dir/90-spotrunner-$user" tmp
    tmp="$dir/.90-spotrunner-$user.tmp" # a name sudo skips (it has a '.')
    if ! command -v sudo >/dev/null 2>&1; then
        warn "sudo is not installed: the runner user $user gets no sudo"
    fi
    if [[ ! -d "$dir" ]]; then
        mkdir -m 750 -- "$dir" || die "cannot create $dir"
    fi
    if ! {
        printf '# spotrunner: the runner user, passwordless sudo (as on GitHub-hosted runners)\n'
        printf 'Defaults:%s !requiretty\n' "$user"
        printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user"
    } >"$tmp" || ! chmod 440 -- "$tmp"; then
        rm -f -- "$tmp"
        die "cannot write $tmp"
    fi
    if command -v visudo >/dev/null 2>&1 && ! visudo -cf "$tmp" >/dev/null 9>&-; then
        rm -f -- "$tmp"
        die "visudo refused the sudoers entry for $user"
    fi
    mv -f -- "$tmp" "$file" || die "cannot write $file"
}

RUNNER_HOME=""
if [[ "$RUN_AS_OTHER" == 1 ]]; then
    created=""
    if [[ -z "$(passwd_field "$RUNNER_USER" 1)" ]]; then
        if getent group "$RUNNER_USER" >/dev/null 2>&1; then
            group_args=(--gid "$RUNNER_USER")
        else
            group_args=(--user-group)
        fi
        if ! useradd --create-home --shell /bin/bash "${group_args[@]}" "$RUNNER_USER" 9>&-; then
            die "could not create the runner user $RUNNER_USER (useradd failed)"
        fi
        unset group_args
        created=" created"
    fi
    grant_sudo "$RUNNER_USER"
    RUNNER_UID="$(passwd_field "$RUNNER_USER" 3)"
    RUNNER_GID="$(passwd_field "$RUNNER_USER" 4)"
    RUNNER_HOME="$(passwd_field "$RUNNER_USER" 6)"
    if ! [[ "$RUNNER_UID" =~ ^[0-9]+$ && "$RUNNER_GID" =~ ^[0-9]+$ ]]; then
        die "runner user $RUNNER_USER: no uid/gid in its passwd entry"
    fi
    if [[ "$RUNNER_UID" == 0 ]]; then
        die "runner user $RUNNER_USER has uid 0: give root as --runner-user root"
    fi
    info "runner user $RUNNER_USER$created (passwordless sudo); the runner runs as it"
    unset created
elif [[ "$CURRENT_UID" == 0 ]]; then
    info "the runner runs as root (RUNNER_ALLOW_RUNASROOT=1)"
fi

# --- 7/8/9. job environment, startup script, .env ------------------------------

export SPOTRUNNER_HOME
export SPOTRUNNER_RUNNER_DIR="$RUNNER_DIR"
export SPOTRUNNER_WORK_DIR="$WORK_DIR"
export SPOTRUNNER_RUNNER_NAME="$RUNNER_NAME"
export SPOTRUNNER_RUNNER_USER="$RUNNER_USER"
# The actions runner refuses root unless told; only a root runner is told.
if [[ "$CURRENT_UID" == 0 && "$RUN_AS_OTHER" == 0 ]]; then
    export RUNNER_ALLOW_RUNASROOT="${RUNNER_ALLOW_RUNASROOT:-1}"
else
    unset RUNNER_ALLOW_RUNASROOT
fi

if [[ -n "$STARTUP_SCRIPT_KEY" ]]; then
    startup_script="$TMP_DIR/startup.sh"
    if ! aws_ s3 cp --only-show-errors "s3://$BUCKET/$STARTUP_SCRIPT_KEY" "$startup_script"; then
        die "could not download startup script s3://$BUCKET/$STARTUP_SCRIPT_KEY"
    fi
    info "running startup script s3://$BUCKET/$STARTUP_SCRIPT_KEY"
    startup_rc=0
    bash "$startup_script" </dev/null 9>&- || startup_rc=$?
    if [[ "$startup_rc" != "0" ]]; then
        die "startup script failed with exit code $startup_rc"
    fi
    info "startup script succeeded"
    unset startup_script startup_rc
fi

# The runner reads KEY=VALUE lines from $RUNNER_DIR/.env into the job's
# environment. Keep other lines, replace ours.
env_file="$RUNNER_DIR/.env"
env_tmp="$TMP_DIR/runner.env"
if [[ -f "$env_file" ]]; then
    grep -v -E '^SPOTRUNNER_(WORK|RUNNER)_DIR=' "$env_file" >"$env_tmp" || true
else
    : >"$env_tmp"
fi
printf 'SPOTRUNNER_WORK_DIR=%s\nSPOTRUNNER_RUNNER_DIR=%s\n' "$WORK_DIR" "$RUNNER_DIR" >>"$env_tmp"
chmod 644 "$env_tmp"
mv -f -- "$env_tmp" "$env_file"
unset env_file env_tmp

if [[ "$RUN_AS_OTHER" == 1 ]]; then
    # As on GitHub-hosted runners: docker without sudo, when installed (also
    # by the startup script, hence only now).
    if getent group docker >/dev/null 2>&1 && ! usermod -aG docker "$RUNNER_USER" 9>&-; then
        warn "could not add $RUNNER_USER to the docker group"
    fi
    # The runner user owns what the runner writes (_diag, the work tree).
    if ! chown -R "$RUNNER_UID:$RUNNER_GID" -- "$RUNNER_DIR" "$WORK_DIR" 9>&-; then
        die "could not give $RUNNER_DIR and $WORK_DIR to $RUNNER_USER"
    fi
fi

# --- 10. the runner -------------------------------------------------------------

if [[ -n "${SPOTRUNNER_RUNNER_CMD:-}" ]]; then
    # Split on whitespace (no quoting, no globbing): "prog arg1 arg2".
    read -r -a runner_cmd <<<"$SPOTRUNNER_RUNNER_CMD"
else
    runner_cmd=("$RUNNER_DIR/run.sh")
fi
# As the runner user: setpriv keeps the environment (so the JIT config stays
# out of every command line) and execs (RUNNER_PID is the runner's).
runner_env=()
if [[ "$RUN_AS_OTHER" == 1 ]]; then
    runner_cmd=(setpriv "--reuid=$RUNNER_UID" "--regid=$RUNNER_GID" --init-groups -- "${runner_cmd[@]}")
    runner_env=(HOME="$RUNNER_HOME" USER="$RUNNER_USER" LOGNAME="$RUNNER_USER")
fi
info "starting runner as $RUNNER_USER: ${runner_cmd[*]} (JIT config in ACTIONS_RUNNER_INPUT_JITCONFIG)"

# In the background, so TERM/INT reach our trap while the runner runs. The
# assignment prefix puts the value in the runner's environment only: this
# shell's own environment never holds it. Without the lock's fd: a process
# the job leaves behind must not keep the lock.
ACTIONS_RUNNER_INPUT_JITCONFIG="$JIT" env ${runner_env[@]+"${runner_env[@]}"} "${runner_cmd[@]}" </dev/null 9>&- &
RUNNER_PID=$!
JIT=""
runner_rc=0
wait "$RUNNER_PID" || runner_rc=$?
RUNNER_PID=""

if [[ "$runner_rc" == "0" ]]; then
    info "runner exited with code 0"
else
    warn "runner exited with code $runner_rc"
fi
exit "$runner_rc"
