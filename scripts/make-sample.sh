#!/usr/bin/env bash
# Regenerates assets/sample.mp4, the demo clip `make run` records in a loop.
#
# 10 s of ffmpeg's testsrc2 pattern (moving, with a running clock) at 640x360 25 fps,
# H.264 main profile, one key frame every 2 s, no B-frames, plus a 440 Hz AAC-LC tone at
# 48 kHz. Deterministic output for a given ffmpeg/x264 build; about 0.5 MB.
#
# Usage: scripts/make-sample.sh [OUTPUT]   (default: assets/sample.mp4)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-assets/sample.mp4}"
command -v ffmpeg >/dev/null || { echo "ffmpeg is required (make test-deps)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
  -map 0:v -map 1:a \
  -c:v libx264 -profile:v main -preset veryfast -pix_fmt yuv420p \
  -g 50 -keyint_min 50 -sc_threshold 0 -bf 0 -b:v 300k -maxrate 400k -bufsize 800k \
  -x264-params "threads=1" \
  -c:a aac -b:a 64k -ar 48000 -ac 1 \
  -movflags +faststart -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
  "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
