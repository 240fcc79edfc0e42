#!/bin/bash
# Installs, idempotently and only where missing, every Debian package that building, testing and
# benchmarking shmdict needs. Safe to run again; does nothing when all is present.
set -euo pipefail
pkgs=(
  meson ninja-build pkg-config gcc g++ python3
  libcriterion-dev libbenchmark-dev
  libmimalloc-dev libjemalloc-dev libboost-dev
  libxxhash-dev libreadline-dev
  redis-server redis-tools libhiredis-dev python3-redis libuv1-dev
  python3-matplotlib
  libglib2.0-dev
  clang libclang-rt-dev
  abigail-tools binutils
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
