#!/bin/bash
# SPDX-License-Identifier: MIT
# The ABI check: compares libshmdict.so with the committed baseline of its soname and fails on an
# incompatible change (Qt's binary-compatibility rules, checked by libabigail).
#
#   scripts/abi-check.sh [BUILD_DIR]            check (CI runs this from .ci/run)
#   scripts/abi-check.sh --update [BUILD_DIR]   write the baseline of the current soname
#
# Without BUILD_DIR the library is built in build-abi/ (debugoptimized: abidw reads the DWARF, so
# the build needs -g; LTO off). With BUILD_DIR the libshmdict.so already built there is used.
#
# The baseline is abi/<soname>.abi (today abi/libshmdict.so.0.abi), made by abidw from the library
# and the public headers (--headers-dir include: only the types of the public API count). The
# verdict comes from abidiff with added functions and types ignored (--no-added-syms) and with the
# suppressions of abi/suppressions.ini (changes that are compatible by design, e.g. fields
# appended to shmd_options_t, which carries struct_size): any remaining change, a removed function
# (abidiff's exit bit 8, ABIDIFF_ABI_INCOMPATIBLE_CHANGE) or a changed function or type (bit 4,
# ABIDIFF_ABI_CHANGE), fails. Additions pass; they are listed, and --update records them.
#
# The baseline is that of the CURRENT soname: a commit that makes an incompatible change bumps
# meson.build's shmd_soversion (libshmdict.so.N -> N+1) and runs --update, which writes
# abi/libshmdict.so.N+1.abi and removes the old baseline, so that commit passes. docs/api.md
# ("ABI and store-format promise") has the rules.
#
# Exit status: 0 compatible, 1 incompatible or no baseline for this soname, 2 cannot check.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '3,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
update=0
build=""
for a in "$@"; do
  case "$a" in
    --update) update=1 ;;
    -h | --help) usage ;;
    -*) echo "abi-check: unknown option $a" >&2; usage ;;
    *) build=$a ;;
  esac
done

for t in abidw abidiff readelf; do
  command -v "$t" >/dev/null || { echo "abi-check: $t not found: run 'bash scripts/setup.sh' (abigail-tools, binutils)" >&2; exit 2; }
done

if [ -z "$build" ]; then
  build=build-abi
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=debugoptimized -Db_lto=false -Dtests=false -Dbench=false >/dev/null ||
      { echo "abi-check: meson setup $build failed" >&2; exit 2; }
  fi
  # Regenerate first (a changed version renames the target), then build the shared library only.
  { ninja -C "$build" build.ninja && meson compile -C "$build" shmdict:shared_library; } >"$build/abi-build.log" 2>&1 ||
    { cat "$build/abi-build.log"; echo "abi-check: build failed" >&2; exit 2; }
fi
# libshmdict.so -> libshmdict.so.N -> the file (a build dir may still hold files of older sonames).
lib=$(readlink -f "$build/libshmdict.so" 2>/dev/null)
[ -n "$lib" ] && [ -f "$lib" ] || { echo "abi-check: no libshmdict.so in $build (build it first)" >&2; exit 2; }
sections=$(readelf -S "$lib")
[[ "$sections" == *.debug_info* ]] ||
  { echo "abi-check: $lib has no debug info: use a debug or debugoptimized build" >&2; exit 2; }
soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -n "$soname" ] || { echo "abi-check: $lib has no SONAME" >&2; exit 2; }

baseline="abi/$soname.abi"
suppr="abi/suppressions.ini"
abidw_opts=(--headers-dir include --exported-interfaces-only --no-corpus-path --no-comp-dir-path
  --short-locs --type-id-style hash)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
abidw "${abidw_opts[@]}" --out-file "$tmp/current.abi" "$lib" ||
  { echo "abi-check: abidw failed on $lib" >&2; exit 2; }

if [ "$update" = 1 ]; then
  mkdir -p abi
  cp "$tmp/current.abi" "$baseline"
  for old in abi/libshmdict.so.*.abi; do
    [ "$old" = "$baseline" ] || { rm -f "$old"; echo "abi-check: removed the baseline of an older soname, $old"; }
  done
  echo "abi-check: wrote $baseline ($(grep -c '<elf-symbol ' "$baseline") functions); commit it"
  exit 0
fi

if [ ! -f "$baseline" ]; then
  others=$(ls abi/libshmdict.so.*.abi 2>/dev/null | paste -sd' ')
  echo "abi-check: FAIL: no baseline $baseline for the library's soname $soname${others:+ (there is: $others)}."
  echo "  If this commit bumped the soname (meson.build's shmd_soversion) for an incompatible change,"
  echo "  run 'scripts/abi-check.sh --update' and commit $baseline in the same commit."
  exit 1
fi

suppr_opt=()
[ -f "$suppr" ] && suppr_opt=(--suppressions "$suppr")
abidiff --no-added-syms "${suppr_opt[@]}" "$baseline" "$tmp/current.abi" >"$tmp/verdict.txt" 2>&1
rc=$?
if [ $((rc & 3)) -ne 0 ]; then
  cat "$tmp/verdict.txt"
  echo "abi-check: abidiff could not compare (exit $rc)" >&2
  exit 2
fi
if [ $((rc & 12)) -ne 0 ]; then
  cat "$tmp/verdict.txt"
  what="changed functions or types"
  [ $((rc & 8)) -ne 0 ] && what="removed functions or variables (and possibly more)"
  echo
  echo "abi-check: FAIL: $lib ($soname) is not binary compatible with $baseline: $what."
  echo "  Programs built against $soname would break. Either keep the old ABI (add a new function"
  echo "  instead of changing one; append to shmd_options_t only; take reserved words of the fixed"
  echo "  structs in place; see docs/api.md, 'ABI and store-format promise'), or make the break"
  echo "  official in this same commit: bump shmd_soversion in meson.build (and the project"
  echo "  version's first number), then run 'scripts/abi-check.sh --update' and commit the new"
  echo "  baseline abi/libshmdict.so.<N+1>.abi."
  echo "  A change that is compatible by those rules but that abidiff cannot tell (a reserved word"
  echo "  taken in place: same size, same offsets) is recorded with --update alone; say so in the"
  echo "  commit message."
  exit 1
fi

added=$(abidiff "${suppr_opt[@]}" "$baseline" "$tmp/current.abi" 2>&1)
if [ $? -ne 0 ]; then
  printf '%s\n' "$added"
  echo "abi-check: ok: $soname is compatible with $baseline (the additions above are fine;"
  echo "  'scripts/abi-check.sh --update' records them in the baseline)"
else
  echo "abi-check: ok: $soname matches $baseline"
fi
exit 0
