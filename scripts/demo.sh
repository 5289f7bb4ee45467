#!/bin/sh
# make demo: run the bundled example event loop under the shim, then report.
set -e
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/asyncshim-demo.XXXXXX)
echo "== running build/examples/loop under asyncshim (traces in $out)"
build/asyncshim run -o "$out/asyncshim" -- build/examples/loop
echo
build/asyncshim report "$out"/asyncshim.*.msgpack
