#!/usr/bin/env bash
# What tests/api/redis.rs drives for real: redis-server. Each test starts its own server on a
# free port (so it can stop and restart it), so only the program is needed, not a running
# service. Debian's package; installed only when missing.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
  echo "redis deps present: $(redis-server --version | cut -d' ' -f1-3)"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing: redis-server"
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server
