#!/usr/bin/env bash
# Release build of `edgerec` for a 64-bit or 32-bit ARM board, linked against glibc 2.17
# symbols with cargo-zigbuild (see cross/env.sh for why), then checked: the right ELF
# machine, no glibc symbol newer than 2.17, at most 8 MB stripped, and it runs under
# qemu-user. Prints the binary's path and size.
#
#   scripts/cross-build.sh aarch64|armv7
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

arch=${1:?usage: scripts/cross-build.sh aarch64|armv7}
# shellcheck source=../cross/env.sh
. cross/env.sh "$arch"
scripts/cross-deps.sh >/dev/null

cargo zigbuild --release --locked --target "$ZIG_TARGET" --bin edgerec
bin=${CARGO_TARGET_DIR:-target}/$TRIPLE/release/edgerec

machine=$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
case "$arch:$machine" in
  aarch64:AArch64 | armv7:ARM) ;;
  *) echo "cross-build: $bin is for '$machine', not $arch" >&2; exit 1 ;;
esac
# The newest GLIBC_x.y symbol version the binary needs.
newest=$(readelf -V -W "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n1)
if [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_VERSION" | sort -V | tail -n1)" != "$GLIBC_VERSION" ]; then
  echo "cross-build: $bin needs glibc $newest, more than $GLIBC_VERSION" >&2
  exit 1
fi
size=$(stat -c %s "$bin")
if [ "$size" -gt 8000000 ]; then
  echo "cross-build: $bin is $size bytes, over the 8 MB (8,000,000 bytes) budget" >&2
  exit 1
fi
scripts/deadline.sh 120 "$bin --version under $QEMU" "$QEMU" "$bin" --version >/dev/null
echo "cross-build: $bin ($arch, glibc >= $newest, $size bytes stripped)"
