#!/usr/bin/env bash
# Publishing while retention removes a large backlog: fills a fresh database with ROWS
# notifications 100 days old (spread over the bench's 1,000 users), starts informd (whose
# retention pass runs at start), and runs informd-bench targeted against it at once. Prints
# the bench's publish -> receive latency and how long the pass took (from informd's log).
# usage: [BIN=dir] scripts/bench-retention.sh sqlite|postgres ROWS [informd-bench targeted ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/serve.sh
backend=$1; rows=$2; shift 2
args=("$@"); [ ${#args[@]} -eq 0 ] && args=(--clients 1000 --events 6000 --rate 400)
bin=${BIN:-target/release}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
secret=bench-secret-$$; key=bench-key-$$
users=1000; per_user=$((rows / users))
old=$(( $(date +%s) * 1000 - 100 * 86400000 ))

if [ "$backend" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS informd_bench_retention WITH (FORCE)' \
    -c 'CREATE DATABASE informd_bench_retention' >/dev/null
  db=postgres://postgres@127.0.0.1:5432/informd_bench_retention
else
  db="$work/bench.db"
fi
INFORMD_DATABASE="$db" INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" "$bin/informd" migrate >/dev/null

# Every user gets seqs 1..per_user, all unread, all old.
if [ "$backend" = postgres ]; then
  psql -q -h 127.0.0.1 -U postgres -d informd_bench_retention <<SQL
INSERT INTO user_state (user_id, last_seq, unread)
  SELECT 't-' || u, $per_user, $per_user FROM generate_series(0, $users - 1) AS u;
INSERT INTO notifications (id, user_id, seq, kind, created_at)
  SELECT nextval('event_ids'), 't-' || u, s, 'old', $old
  FROM generate_series(1, $per_user) AS s, generate_series(0, $users - 1) AS u;
VACUUM ANALYZE;
SQL
else
  python3 - "$db" "$users" "$per_user" "$old" <<'PY'
import sqlite3, sys
db, users, per_user, old = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db)
c.executemany("INSERT INTO user_state (user_id, last_seq, unread) VALUES (?, ?, ?)",
              ((f"t-{u}", per_user, per_user) for u in range(users)))
c.executemany("INSERT INTO notifications (id, user_id, seq, kind, created_at) VALUES (?, ?, ?, 'old', ?)",
              ((s * users + u + 1, f"t-{u}", s + 1, old) for s in range(per_user) for u in range(users)))
c.commit()
PY
fi

serve_informd "$work/server.log" 400 env INFORMD_LISTEN=127.0.0.1:0 INFORMD_DATABASE="$db" \
  INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" INFORMD_RETENTION_DAYS=30 \
  RUST_LOG=warn,informd::startup=info,informd::retention=info "$bin/informd" serve || true
out=$(timeout 120 "$bin/informd-bench" --url "http://127.0.0.1:$port" --secret "$secret" --key "$key" --pid "$server_pid" \
  targeted "${args[@]}" 2>/dev/null | tail -1 || true)
for _ in $(seq 1 600); do grep -q "retention: pruned" "$work/server.log" && break; sleep 0.1; done
kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" || true
echo "$backend rows $rows: $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); l=d["latency_ms"]; print("publishes/s", d["publishes_per_sec"], "p50", l.get("p50"), "p99", l.get("p99"), "max", l.get("max"), "lost", d["deliveries"].get("lost"), "doubled", d["deliveries"].get("doubled"))' 2>/dev/null || echo 'bench failed')"
grep -E "listening on|retention: " "$work/server.log" | sed 's/^/  /'
