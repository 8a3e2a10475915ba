#!/usr/bin/env bash
# What tests/ops/ drives for real: nginx and supervisor, and systemd-analyze (package systemd)
# to verify systemd/informd.service. Debian packages; installs only what is missing, so a
# second run costs nothing.
set -euo pipefail

missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v supervisord >/dev/null 2>&1 || missing+=(supervisor)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)

if [ ${#missing[@]} -eq 0 ]; then
  echo "ops deps present: nginx, supervisor, systemd-analyze"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
echo "installing: ${missing[*]}"
$sudo apt-get update
# The packages' post-install scripts would start system-wide nginx and supervisord; the
# tests run their own instances, so nothing is started here (policy-rc.d may forbid it too).
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
