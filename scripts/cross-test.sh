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

# Under qemu, the library's unit tests are built without the `process-tests` feature: the
# tests that start host processes (ffmpeg/ffprobe fixtures and readers, strace, the test
# binary re-executed by the crash tests) are not compiled in. qemu-user's fork of a
# multithreaded guest can deadlock at random, and an emulated process cannot exec another
# foreign binary without binfmt_misc anyway. They run natively in `cargo test`; the code
# they prove is the same on every architecture. Every qemu run has a deadline
# (scripts/deadline.sh): a hang fails the run and prints what was running.
# Built first, outside the deadline (no qemu runs while compiling): the deadline is for
# what runs under qemu only, so a slow build never counts as a hang.
echo "cross-test: building the unit tests for $TRIPLE"
cargo-zigbuild test --locked --lib --no-default-features --target "$ZIG_TARGET" --no-run
echo "cross-test: unit tests for $TRIPLE under $QEMU"
scripts/deadline.sh "${EDGEREC_QEMU_UNIT_DEADLINE:-900}" "$arch unit tests under qemu" \
  cargo-zigbuild test --locked --lib --no-default-features --target "$ZIG_TARGET"

echo "cross-test: end-to-end recording with $release under $QEMU"
cargo test --locked --test packaging_cross --no-run
EDGEREC_CROSS_BIN=$release EDGEREC_CROSS_RUNNER="$QEMU -L $SYSROOT" \
  scripts/deadline.sh 900 "end-to-end recording with the $arch binary under qemu" \
  cargo test --locked --test packaging_cross
