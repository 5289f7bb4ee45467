#!/bin/sh
# tasks.sh — what the task hooks add to a coroutine switch and to a loop
# callback (bench/tasks.c, built by `make bench` as build/bench/tasks).
# Runs it three ways: without the shim (measures ~0: the method's noise),
# with the shim disabled (enabled=0: the cost of interposing alone) and
# with the shim recording.  ROUNDS operations per block (default 5000).
set -e
cd "$(dirname "$0")/.."
bin=build/bench/tasks
lib=$PWD/build/libasyncshim.so
[ -x "$bin" ] || { echo "tasks.sh: build $bin first (make bench)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {
	label=$1
	shift
	env "$@" "$bin" "${ROUNDS:-5000}" |
		awk -v l="$label" '/^ROW/ { printf "  %-11s %-16s %+8.1f ns   (%.1f ns vs %.1f ns)\n", $2, l, $3, $4, $5 }'
}
echo "task hooks: extra ns per operation, median over ABBA block pairs (hooked vs direct)"
run "no shim"
run "shim disabled" LD_PRELOAD="$lib" ASYNCSHIM_OPTIONS=enabled=0
run "shim" LD_PRELOAD="$lib" ASYNCSHIM_OPTIONS="out=$tmp/trace"
