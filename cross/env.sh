# Sourced by scripts/cross-*.sh: the settings for one ARM architecture.
#
#   . cross/env.sh aarch64|armv7
#
# Sets TRIPLE (Rust target), ZIG_TARGET (the same with the glibc version the binary is
# linked against), DEB_ARCH, QEMU (the qemu-user command that runs a binary of that
# architecture here) and puts the zig toolchain (scripts/cross-deps.sh) on PATH.
#
# Why glibc 2.17: one binary per architecture must run on Raspberry Pi OS (glibc 2.36) and
# on Jetson L4T (Ubuntu 20.04/22.04, glibc 2.31/2.35). cargo-zigbuild links against the
# symbol versions of an old glibc, so the binary needs nothing newer than 2.17 (Rust's own
# minimum) while using the board's glibc, its malloc and its DNS resolver.

# shellcheck shell=bash
case "${1:-}" in
  aarch64 | arm64)
    TRIPLE=aarch64-unknown-linux-gnu
    DEB_ARCH=arm64
    QEMU_BIN=qemu-aarch64
    SYSROOT=/usr/aarch64-linux-gnu
    ;;
  armv7 | armhf)
    TRIPLE=armv7-unknown-linux-gnueabihf
    DEB_ARCH=armhf
    QEMU_BIN=qemu-arm
    SYSROOT=/usr/arm-linux-gnueabihf
    ;;
  *)
    echo "cross/env.sh: unknown architecture '${1:-}' (aarch64 or armv7)" >&2
    return 2 2>/dev/null || exit 2
    ;;
esac
GLIBC_VERSION=2.17
ZIG_TARGET=$TRIPLE.$GLIBC_VERSION
# qemu-user finds the target's dynamic loader and libc under SYSROOT (libc6-*-cross).
# QEMU_LD_PREFIX rather than -L: children inherit it.
QEMU="$QEMU_BIN"
export QEMU_LD_PREFIX=$SYSROOT
# The zig toolchain: ziglang and cargo-zigbuild from PyPI in a venv.
EDGEREC_TOOLS=${EDGEREC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgerec}
ZIG_VENV=$EDGEREC_TOOLS/zig-venv
export PATH="$ZIG_VENV/bin:$PATH"
# cargo runs test binaries of this target under qemu.
runner_var=CARGO_TARGET_$(echo "$TRIPLE" | tr 'a-z-' 'A-Z_')_RUNNER
export "$runner_var=$QEMU"
unset runner_var
export TRIPLE ZIG_TARGET DEB_ARCH QEMU QEMU_BIN SYSROOT GLIBC_VERSION
