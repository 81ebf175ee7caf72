#!/usr/bin/env bash
# ARM CI on an x86 machine: the library's unit tests, cross-built for aarch64 (debug, zig
# as the linker) and run under qemu-user; then the end-to-end recording test
# (tests/packaging_cross.rs) with the aarch64 *release* binary under qemu, its segments
# checked by the host's ffprobe and ffmpeg. Needs scripts/cross-build.sh aarch64 first
# (make test-aarch64 does both).
#
#   scripts/cross-test.sh aarch64
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

arch=${1:-aarch64}
# shellcheck source=../cross/env.sh
. cross/env.sh "$arch"
scripts/cross-deps.sh >/dev/null
release=${CARGO_TARGET_DIR:-target}/$TRIPLE/release/edgerec
[ -x "$release" ] || { echo "cross-test: build $release first (make build-$arch)" >&2; exit 1; }

# Skipped under qemu: the crash tests and the strace tests re-execute their own test binary,
# and an emulated process cannot exec another foreign binary without binfmt_misc (which CI
# lacks; nor can strace follow an emulated process). The durability protocol they prove is
# the same code on every architecture; they run natively in `cargo test`.
echo "cross-test: unit tests for $TRIPLE under $QEMU"
cargo-zigbuild test --locked --lib --target "$ZIG_TARGET" -- \
  --skip store::crash_tests::store_killed_at_arbitrary_moments_recovers_to_a_consistent_decodable_state \
  --skip store::crash_tests::a_delete_cut_short_after_its_unlinks \
  --skip store::syscall_tests::begin_makes \
  --skip store::syscall_tests::delete_marks \
  --skip store::syscall_tests::rebuild_ends

echo "cross-test: end-to-end recording with $release under $QEMU"
EDGEREC_CROSS_BIN=$release EDGEREC_CROSS_RUNNER="$QEMU -L $SYSROOT" \
  cargo test --locked --test packaging_cross
