#!/usr/bin/env bash
# Installs what `make test` needs beyond Rust, only when something is missing, so it is
# cheap to run every time. Debian, Ubuntu and Raspberry Pi OS (apt-get); uses sudo when not
# root. Needs: ffmpeg/ffprobe (independent readers of every file the tests write, and the
# clip generator), GStreamer's RTSP server with Python bindings (the RTSP test peer,
# tests/peers/rtsp_server.py), pyfuse3 and fuse3 (the power-loss filesystem peer,
# tests/peers/powerloss_fs.py; it also needs /dev/fuse and root), strace (the store's
# syscall-order tests), and rustup's clippy and rustfmt components. For the boards
# (make test-aarch64, test-deb): qemu-user and the ARM C libraries it runs binaries with,
# python3-venv (zig comes from PyPI, scripts/cross-deps.sh), binutils' readelf, and
# systemd's systemd-analyze/-sysusers/-tmpfiles for the unit checks; g++ builds libFuzzer
# for `make fuzz-check`; faketime (libfaketime) steps the wall clock under a running
# recorder in tests/e2e_clock.rs. chromium, nodejs and npm: real players in a headless
# browser (tests/browser: hls.js driven by puppeteer-core, installed by `npm ci` from its
# lock file; puppeteer downloads no browser, it drives Debian's /usr/bin/chromium). curl is
# the HTTP API's client in tests/e2e_http.rs, and prometheus's promtool checks /metrics.
set -euo pipefail

packages=(
  ffmpeg
  python3-gi
  gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-rtsp
  gstreamer1.0-tools
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly
  gstreamer1.0-libav
  qemu-user
  libc6-arm64-cross
  libc6-armhf-cross
  python3-venv
  strace
  binutils
  systemd
  g++
  mosquitto
  mosquitto-clients
  openssl
  python3-pyfuse3
  fuse3
  faketime
  chromium
  curl
  prometheus
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
else
  # Not a Debian system: we can only check the commands and say what is missing.
  for c in ffmpeg ffprobe gst-launch-1.0; do
    command -v "$c" >/dev/null || missing+=("$c")
  done
fi

if ((${#missing[@]})); then
  if ! command -v apt-get >/dev/null; then
    echo "test-deps: missing ${missing[*]}; install them with your package manager" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "test-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "test-deps: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The RTSP peer runs on the distribution's python (PyGObject is not on pyenv/venv pythons).
if ! /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer' 2>/dev/null; then
  echo "test-deps: /usr/bin/python3 cannot import GstRtspServer (python3-gi, gir1.2-gst-rtsp-server-1.0)" >&2
  exit 1
fi
# The power-loss filesystem peer runs on the distribution's python too (pyfuse3 with trio).
if ! /usr/bin/python3 -c 'import pyfuse3, trio' 2>/dev/null; then
  echo "test-deps: /usr/bin/python3 cannot import pyfuse3 and trio (python3-pyfuse3)" >&2
  exit 1
fi
for c in ffmpeg ffprobe; do
  command -v "$c" >/dev/null || { echo "test-deps: $c not found after install" >&2; exit 1; }
done

if command -v rustup >/dev/null; then
  for comp in clippy rustfmt; do
    rustup component list --installed 2>/dev/null | grep -q "^$comp" || rustup component add "$comp"
  done
else
  cargo clippy --version >/dev/null 2>&1 || { echo "test-deps: cargo clippy missing (install rustup)" >&2; exit 1; }
  cargo fmt --version >/dev/null 2>&1 || { echo "test-deps: cargo fmt missing (install rustup)" >&2; exit 1; }
fi
# node and npm: Debian's, unless some node (e.g. NodeSource's, which bundles npm and
# conflicts with Debian's npm package) is there already.
if ! command -v npm >/dev/null; then
  sudo=()
  [ "$(id -u)" -ne 0 ] && sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
# The browser tests' npm packages, from the lock file; again only when the lock changed.
browser="$(dirname "${BASH_SOURCE[0]}")/../tests/browser"
if ! cmp -s "$browser/package-lock.json" "$browser/node_modules/.installed-lock.json"; then
  (cd "$browser" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error &&
    cp package-lock.json node_modules/.installed-lock.json)
fi
# moto's S3 server for the upload tests (tests/peers/s3_server.py), in a venv.
"$(dirname "${BASH_SOURCE[0]}")/moto-venv.sh"
echo "test-deps: ok"
