#!/usr/bin/env bash
# Runs a command in the background beside another, then waits for both; fails if either
# failed. The background command's output goes to a log that is printed when it ends (so the
# two outputs do not interleave).
#
#   scripts/beside.sh "BACKGROUND COMMAND" -- FOREGROUND COMMAND...
set -uo pipefail
[ $# -ge 3 ] && [ "$2" = "--" ] || { echo "usage: $0 \"CMD\" -- CMD..." >&2; exit 2; }
bg=$1
shift 2
log=$(mktemp "${TMPDIR:-/tmp}/beside.XXXXXX")
trap 'rm -f "$log"' EXIT
echo "beside: started in the background: $bg (output shown when it ends)"
bash -c "$bg" >"$log" 2>&1 &
pid=$!
"$@"
fg=$?
wait "$pid"
bgst=$?
echo "beside: output of: $bg (exit $bgst)"
cat "$log"
if [ "$fg" -ne 0 ] || [ "$bgst" -ne 0 ]; then
  echo "beside: failed: foreground exit $fg, background exit $bgst ($bg)" >&2
  exit 1
fi
