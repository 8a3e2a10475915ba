#!/usr/bin/env bash
# What tests/browser/django.rs runs: Python 3 with venv, and tests/django/.venv holding the
# packages docs/django.md uses (tests/django/requirements.txt). Installs only what is missing:
# apt-get for Python itself, pip only when the requirements changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
  echo "python.sh: installing python3 python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends python3 python3-venv
fi

venv=tests/django/.venv
requirements=tests/django/requirements.txt
stamp=$venv/.informd-requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "python.sh: pip install -r $requirements"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
fi
