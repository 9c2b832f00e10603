#!/bin/sh
# Setup of the benchmark harness: wrk from Debian as the load generator. Without it the harness falls back
# to its asyncio client (python -m bench.loadgen), which costs more CPU on the shared cores.
set -e
if command -v wrk >/dev/null 2>&1; then
  echo "wrk present: $(wrk -v 2>&1 | head -1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq wrk
wrk -v 2>&1 | head -1
