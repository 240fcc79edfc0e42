#!/bin/bash
# Builds shmdict and runs the whole test suite (Criterion, through meson), then prints one closing
# line "tests: N passed, N failed". Usage: scripts/test.sh [BUILD_DIR] [extra meson setup args...]
# Tests use private store directories under /dev/shm, never the default store directory.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-test}
shift || true
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=debugoptimized -Dwerror=true -Dtests=true "$@" >/dev/null || exit 1
fi
ninja -C "$build" >/dev/null || { ninja -C "$build"; exit 1; }
meson test -C "$build" --num-processes 2 --print-errorlogs
rc=$?
python3 - "$build/meson-logs/testlog.txt" <<'PY'
import re, sys
passed = failed = 0
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)", line)
    if m:
        passed += int(m.group(2)); failed += int(m.group(3)) + int(m.group(4))
print(f"tests: {passed} passed, {failed} failed")
PY
exit $rc
