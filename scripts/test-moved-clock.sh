#!/usr/bin/env bash
# The fast suites once more with the machine's date a year ahead (libfaketime):
# the unit tests of every crate and the CLI's tests that need no moto. A test
# that builds a record at a fixed instant and runs a step at the wall clock
# passes on the day it lands and fails later; here it fails at once
# (`spotrunner_core::clock`, ARCHITECTURE.md "One clock").
#
#   scripts/test-moved-clock.sh            # a year ahead
#   SPOTRUNNER_CLOCK_OFFSET=+3650d scripts/test-moved-clock.sh
#
# Only the wall clock moves: monotonic clocks (timers, timeouts) are real.
# Locally a missing libfaketime is said loudly and the run skipped; under CI it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test-moved-clock: %s\n' "$*" >&2; }
offset="${SPOTRUNNER_CLOCK_OFFSET:-+365d}"

# libfaketime, preloaded into the test binaries only. Not into cargo or rustc
# (rustc hangs under it), and not through the `faketime` wrapper; with
# NO_FAKE_STAT, because a faked stat() takes a semaphore shared by every process
# of the run, and a process killed while holding it (the tests SIGKILL `serve`
# and runners) would hang all the others. File times stay real: nothing of ours
# compares a file's time with the clock.
lib=""
for candidate in /usr/lib/*/faketime/libfaketime.so.1; do
  [ -e "$candidate" ] && lib="$candidate" && break
done
if [ -z "$lib" ]; then
  if [ -n "${CI:-}" ]; then
    say "ERROR: libfaketime not found (Debian package faketime; scripts/install-test-deps.sh installs it)"
    exit 1
  fi
  say "WARNING: libfaketime not found: the moved-clock run is SKIPPED (apt-get install faketime)"
  exit 0
fi
moved() {
  SPOTRUNNER_REAL_NOW=$(date -u +%s) LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" \
    FAKETIME="$offset" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_NO_CACHE=1 NO_FAKE_STAT=1 "$@"
}

real_year=$(date -u +%Y)
moved_year=$(moved date -u +%Y)
if [ "$moved_year" -le "$real_year" ]; then
  say "ERROR: FAKETIME=$offset gave the year $moved_year (real: $real_year): the clock did not move"
  exit 1
fi

# The CLI's integration tests that need no AWS emulator.
cli_tests=()
for f in crates/cli/tests/*.rs; do
  grep -q 'moto' "$f" && continue
  cli_tests+=(--test "$(basename "$f" .rs)")
done

# Built at the real date; "<package dir> <test binary>" per line.
binaries() {
  cargo test "$@" --no-run --quiet --message-format=json | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(os.path.dirname(m["manifest_path"]), m["executable"])
'
}
list=$(mktemp)
trap 'rm -f "$list"' EXIT
binaries --workspace --lib --bins >"$list"
binaries -p spotrunner "${cli_tests[@]}" >>"$list"
proof=$(binaries -p spotrunner-core --test moved_clock | cut -d' ' -f2)
[ -n "$proof" ] || { say "ERROR: crates/core/tests/moved_clock.rs was not built"; exit 1; }

say "the machine's date is now $(moved date -u +%Y-%m-%dT%H:%M:%SZ) ($offset)"
moved "$proof" --ignored --exact the_moved_clock_run_sees_a_date_a_year_ahead

failed=()
while read -r dir exe; do
  name=$(basename "$exe")
  say "running $name (in ${dir#"$PWD"/})"
  (cd "$dir" && moved "$exe" </dev/null) || failed+=("$name")
done <"$list"
if [ "${#failed[@]}" -gt 0 ]; then
  say "FAILED with the date at $offset: ${failed[*]}"
  exit 1
fi
say "ok: $(wc -l <"$list") test binaries pass with the date at $offset"
