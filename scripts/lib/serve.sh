# Sourced by the bench scripts that start informd themselves (on port 0) and must learn its port.
#
#   serve_informd LOG TRIES COMMAND...
#       Runs COMMAND (`informd serve`, with its environment given through `env`) in the
#       background with its stderr in LOG, and sets `server_pid` and `port` once it says where
#       it listens. Returns 1, after printing LOG, when it has not within TRIES × 50 ms.

serve_informd() {
  local log=$1 tries=$2
  shift 2
  # Emptied here, before the job starts: the job's own redirection runs inside the job, maybe
  # after the first look for the port, which would then find the last server's port.
  : > "$log"
  "$@" 2> "$log" &
  server_pid=$!
  port=""
  for _ in $(seq 1 "$tries"); do
    port=$(sed -n 's/.*informd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  cat "$log" >&2
  return 1
}
