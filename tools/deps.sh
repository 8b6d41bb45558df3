#!/usr/bin/env bash
# Installs the Debian 12 packages Cascade needs to build, test and run its demo.
# Installs only what is missing; needs root (or sudo) when something is missing.
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config ca-certificates
  libboost1.81-dev libsimdjson-dev libhiredis-dev libspdlog-dev libssl-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  redis-server python3-aiosmtpd openssl curl clang-14 libclang-rt-14-dev libjemalloc-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian package starts a system redis-server on 6379; we never use it (tests and the
# demo start their own on free ports), so leave it as the package set it up.
