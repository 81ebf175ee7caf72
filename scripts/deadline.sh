#!/usr/bin/env bash
# Runs a command with a deadline. If it is still running then, prints what was running
# (its process tree with each process's state and kernel wait channel), stops it and
# fails with exit 124, so a hang fails the run with a name instead of eating CI's time.
#
#   scripts/deadline.sh SECONDS LABEL command [args...]
#
# Every qemu-user run goes through this: qemu-user's fork of a multithreaded guest can
# deadlock at random (the child waits on a futex forever with no CPU), and libtest alone
# would wait for it until CI's 90-minute limit.
set -uo pipefail

[ $# -ge 3 ] || { echo "usage: $0 SECONDS LABEL command [args...]" >&2; exit 2; }
secs=$1
label=$2
shift 2

expired=$(mktemp)
rm -f "$expired"
# Job control gives the command a process group of its own, which the watchdog can list
# and kill whole (cargo, the test binary, qemu and whatever they started).
set -m
"$@" &
pid=$!
set +m

(
  trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
  sleep "$secs" &
  sleeper=$!
  wait "$sleeper"
  kill -0 "$pid" 2>/dev/null || exit 0
  : >"$expired"
  {
    echo
    echo "deadline: '$label' still running after ${secs}s; stopping it. What was running:"
    ps -e --forest -o pgid=,pid=,ppid=,etimes=,time=,stat=,wchan:32=,args= |
      awk -v g="$pid" 'BEGIN { print "  PID  PPID ELAPSED     TIME STAT WCHAN                            COMMAND" }
        $1 == g { $1 = ""; print }' || true
  } >&2
  kill -TERM -- "-$pid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$pid" 2>/dev/null || exit 0
    sleep 1
  done
  kill -KILL -- "-$pid" 2>/dev/null
  exit 0
) &
watchdog=$!

wait "$pid"
rc=$?
kill -TERM "$watchdog" 2>/dev/null
wait "$watchdog" 2>/dev/null
if [ -e "$expired" ]; then
  rm -f "$expired"
  echo "deadline: '$label' FAILED: it did not finish within ${secs}s (see the process list above)" >&2
  exit 124
fi
exit "$rc"
