#!/usr/bin/env bash
# Installs what the ARM cross builds need beyond scripts/test-deps.sh (which installs the
# Debian side: qemu-user and the ARM C libraries it runs binaries with), only when missing:
# the rustup targets, and zig + cargo-zigbuild from PyPI in a venv under
# ~/.cache/edgerec/zig-venv (EDGEREC_TOOLS overrides the directory).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ZIGLANG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.0
tools=${EDGEREC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgerec}
venv=$tools/zig-venv

if command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  for t in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
  done
fi

have() {
  [ -x "$venv/bin/cargo-zigbuild" ] &&
    "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "$ZIGBUILD_VERSION" &&
    "$venv/bin/python3" -m ziglang version 2>/dev/null | grep -q "^$ZIGLANG_VERSION"
}
if ! have; then
  echo "cross-deps: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION into $venv"
  mkdir -p "$tools"
  # The distribution's python: pyenv shims may point at a python without venv/ensurepip.
  py=/usr/bin/python3
  [ -x "$py" ] || py=python3
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
  have || { echo "cross-deps: zig toolchain did not install" >&2; exit 1; }
fi
echo "cross-deps: ok"
