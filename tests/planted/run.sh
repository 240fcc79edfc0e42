#!/bin/bash
# The planted-bug audit (docs/reliability.md, "Planted-bug audit"), re-runnable: for each patch
# here (or the ones named), plants the bug in the working tree, rebuilds BUILD_DIR, runs every test
# its "Test:" lines name and expects each to FAIL; then removes the bug, rebuilds, runs them again
# and expects each to PASS. Nothing is ever committed; the patch is removed on exit or interrupt.
# Run it in a checkout whose library files have no uncommitted changes. A patch that no longer
# applies (the code moved on) is reported as such: plant that bug again by hand from its "Bug:" line.
#   tests/planted/run.sh [BUILD_DIR] [PATCH...]      (BUILD_DIR default build-dev, configured)
# Prints one line per (patch, test) and a summary; exit status 0 when every test failed with its
# bug and passed without it.
set -u
cd "$(dirname "$0")/../.." || exit 2
build=${1:-build-dev}
shift || true
[ -f "$build/build.ninja" ] || { echo "run.sh: $build is not a configured build directory" >&2; exit 2; }
patches=("$@")
[ ${#patches[@]} -eq 0 ] && patches=(tests/planted/*.patch)
export SHMDICT_BIN=$PWD/$build/tools/shmdict GUILD_FRIENDS=$PWD/$build/examples/guild_friends
export CRITERION_NO_EARLY_EXIT=1
log=$(mktemp)
planted=""
cleanup() {
  [ -n "$planted" ] && git apply -R "$planted" && ninja -C "$build" >/dev/null 2>&1
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_one "test_x suite/name" or "torture ARGS...": 0 if it passed, 1 if it failed, 2 if it ran nothing
run_one() {
  local bin=${1%% *} rest=${1#* }
  if [ "$bin" = torture ]; then
    # shellcheck disable=SC2086
    "$build/tests/torture/torture" $rest >"$log" 2>&1
    return $(( $? != 0 ))
  fi
  "$build/tests/$bin" --jobs 1 --filter "$rest" >"$log" 2>&1
  local rc=$?
  grep -q "Tested: [1-9]" "$log" || return 2
  return $(( rc != 0 ))
}

bad=0 total=0
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  mapfile -t tests < <(sed -n 's/^Test: //p' "$p")
  if ! git apply --check "$p" 2>/dev/null; then
    echo "$name: DOES NOT APPLY (plant it by hand: $(sed -n 's/^Bug: //p' "$p"))"
    bad=$((bad + 1))
    continue
  fi
  git apply "$p" && planted=$p
  ninja -C "$build" >/dev/null 2>&1 || { echo "$name: does not build with the bug"; bad=$((bad + 1)); }
  declare -A with=()
  for t in "${tests[@]}"; do
    run_one "$t"
    with[$t]=$?
  done
  git apply -R "$p" && planted=""
  ninja -C "$build" >/dev/null 2>&1 || { echo "run.sh: the tree does not build after removing $name" >&2; exit 2; }
  for t in "${tests[@]}"; do
    run_one "$t"
    without=$?
    total=$((total + 1))
    if [ "${with[$t]}" = 1 ] && [ "$without" = 0 ]; then
      echo "$name: $t: fails with the bug, passes without"
    else
      verdict=$([ "${with[$t]}" = 1 ] && echo "fails" || ([ "${with[$t]}" = 2 ] && echo "runs nothing" || echo "PASSES"))
      echo "$name: $t: $verdict with the bug, $([ "$without" = 0 ] && echo passes || echo FAILS) without  <-- check"
      bad=$((bad + 1))
    fi
  done
  unset with
done
echo "planted-bug audit: $total checks, $bad not as expected"
[ $bad -eq 0 ]
