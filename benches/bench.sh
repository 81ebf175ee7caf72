#!/usr/bin/env bash
# Recording benchmark: edgerec vs ffmpeg (`-c copy -f segment`), both pulling the same
# RTSP stream from the test peer, for 1, 8 and 32 streams; then fmp4 + flv + aac against
# ffmpeg's tee muxer writing the same, for 1 and 8 streams. Writes docs/bench.md.
#
#   make bench                       # or benches/bench.sh
#   BENCH_STREAMS="1 8" BENCH_SECONDS=20 benches/bench.sh
#   BENCH_STREAMS= BENCH_FORMAT_STREAMS=1 benches/bench.sh   # the formats rows only
#   EDGEREC_BIN=target/debug/edgerec BENCH_CLIP=small.mp4 BENCH_OUT=/tmp/b.md benches/bench.sh  # smoke
#
# The clip (1080p30 H.264 4 Mbit/s + AAC, 60 s) is generated once into target/bench/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out_dir=target/bench
clip="${BENCH_CLIP:-$out_dir/clip-1080p30-4M-60s.mp4}"
mkdir -p "$out_dir"

if [ ! -s "$clip" ]; then
  echo "bench: generating $clip (once; takes a minute or two)"
  ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=60" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=60" \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -profile:v high \
    -b:v 4M -maxrate 4M -bufsize 8M -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k -ar 48000 -ac 2 \
    "$clip.tmp.mp4"
  mv "$clip.tmp.mp4" "$clip"
fi

if [ -z "${EDGEREC_BIN:-}" ]; then
  cargo build --release
  EDGEREC_BIN=target/release/edgerec
fi

# Uploads: edgerec's uploader against one plain PUT of the same bytes, both to moto on
# loopback; CPU seconds per uploaded GB (docs/bench-upload.md).
scripts/moto-venv.sh >/dev/null
python3 benches/upload_bench.py --edgerec "$EDGEREC_BIN" \
  --python "${EDGEREC_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/edgerec}/moto-venv/bin/python3" \
  --work "$out_dir/upload" --out "${BENCH_UPLOAD_OUT:-docs/bench-upload.md}"

exec python3 benches/bench.py \
  --edgerec "$EDGEREC_BIN" \
  --clip "$clip" \
  --work "$out_dir/run" \
  --streams ${BENCH_STREAMS-1 8 32} \
  --format-streams ${BENCH_FORMAT_STREAMS-1 8} \
  --seconds "${BENCH_SECONDS:-60}" \
  --out "${BENCH_OUT:-docs/bench.md}"
