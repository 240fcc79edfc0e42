#!/bin/bash
# SPDX-License-Identifier: MIT
# The main job: sets up (scripts/setup.sh), builds the library and the guild/friend example
# (meson, release, in build/), then runs examples/guild_friends twice on a store of 1 000 000
# players in the default store directory ($SHMDICT_DIR, else /dev/shm/shmdict): the first run
# builds the store if it is absent (else it attaches), the second attaches to it and prints how
# long the attach and the first answer took.
#
#   scripts/main-job.sh                      1 000 000 players (about 10-20 s to build, ~600 MiB)
#   scripts/main-job.sh -n 20000             a quick demo
#   scripts/main-job.sh --rebuild            drop the store and build it again
#   scripts/main-job.sh --crash              also: a run killed in an update batch, and the run
#                                            that recovers from it
# Other arguments go to the example (see build/examples/guild_friends --help). Remove the store
# with: rm -r "${SHMDICT_DIR:-/dev/shm/shmdict}/guild_friends"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

crash=0
first=()
args=()
for a in "$@"; do
  case "$a" in
    --crash) crash=1 ;;
    --rebuild) first+=("$a") ;;
    *) args+=("$a") ;;
  esac
done

bash scripts/setup.sh
build=build
if [ ! -f "$build/build.ninja" ]; then
  echo "main-job: configuring $build (release)" >&2
  meson setup "$build" --buildtype=release >&2
else
  buildtype=$(meson configure "$build" 2>/dev/null | awk '$1 == "buildtype" { print $2 }')
  if [ -n "$buildtype" ] && [ "$buildtype" != "release" ]; then
    echo "main-job: note: $build is configured as '$buildtype', not release" >&2
  fi
fi
echo "main-job: building the example, the CLI, the malloc shim and the server" >&2
# ninja (not `meson compile TARGET`) so that a build/ configured before the example existed is
# regenerated first. Every path the README names exists afterwards (the server when libuv is
# installed, which scripts/setup.sh does).
targets=(examples/guild_friends tools/shmdict malloc/libshmdict-malloc.so)
if ninja -C "$build" -t targets all 2>/dev/null | grep -q '^server/shmdict-server:'; then
  targets+=(server/shmdict-server)
fi
ninja -C "$build" "${targets[@]}" >&2

exe="$build/examples/guild_friends"
run() {
  echo
  echo "\$ $exe $*"
  "$exe" "$@"
}
run ${first[@]+"${first[@]}"} ${args[@]+"${args[@]}"}
run ${args[@]+"${args[@]}"}
if [ "$crash" -eq 1 ]; then
  run --crash-during-update ${args[@]+"${args[@]}"} || echo "(killed with status $? -- as intended)"
  run ${args[@]+"${args[@]}"}
fi
