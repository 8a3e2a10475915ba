#!/usr/bin/env bash
# The PostgreSQL the tests use (tests/api on PostgreSQL, tests/api/postgres.rs): a server on
# 127.0.0.1:5432 where user postgres logs in without a password (trust, loopback only). If it
# answers, nothing is done; else the Debian package is installed if missing, its cluster is
# started, and trust for 127.0.0.1 is ensured. A second run costs nothing.
set -euo pipefail

host=127.0.0.1
port=5432

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi

answers() {
  command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"
}

logs_in() {
  psql -h "$host" -p "$port" -U postgres -d postgres -w -tAc 'SELECT 1' >/dev/null 2>&1
}

if answers && logs_in; then
  echo "postgres deps present: PostgreSQL answers on $host:$port for user postgres"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing: postgresql"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql
fi

# The newest installed version's cluster (the package creates "main").
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
cluster=main
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version $cluster"; then
  $sudo pg_createcluster "$version" "$cluster" -p "$port"
fi

# Trust for user postgres from 127.0.0.1 only, ahead of every other rule.
hba=/etc/postgresql/$version/$cluster/pg_hba.conf
rule="host all postgres 127.0.0.1/32 trust"
changed=no
if ! grep -Eq "^host[[:space:]]+all[[:space:]]+(all|postgres)[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust" "$hba"; then
  $sudo sed -i "1i $rule" "$hba"
  changed=yes
fi

if answers; then
  if [ "$changed" = yes ]; then
    $sudo pg_ctlcluster "$version" "$cluster" reload
  fi
else
  $sudo pg_ctlcluster "$version" "$cluster" start || $sudo service postgresql start
fi

for _ in $(seq 1 50); do
  if answers && logs_in; then
    echo "PostgreSQL $version answers on $host:$port for user postgres"
    exit 0
  fi
  sleep 0.2
done
echo "PostgreSQL does not answer on $host:$port for user postgres (see /var/log/postgresql/)" >&2
exit 1
