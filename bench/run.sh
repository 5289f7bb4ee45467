#!/bin/sh
# bench/run.sh [--quick] [--only PART,...] — the benchmark suite behind
# `make bench`; prints one table and writes bench/results.md.
set -e
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/bench.py "$@"
