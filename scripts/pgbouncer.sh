#!/usr/bin/env bash
# A throwaway PgBouncer in front of a PostgreSQL, for the tests and the benchmark (the pooler teams reach their
# database through: Supabase, Heroku, Railway, Azure's built-in PgBouncer).
#   scripts/pgbouncer.sh start DIR ADMIN_URL MODE   MODE is transaction or session; prints the admin URL through the pooler
#   scripts/pgbouncer.sh restart DIR [SECONDS]      stop it (every client connection is cut) and start it on the same port,
#                                                   after SECONDS down (default 0)
#   scripts/pgbouncer.sh stop DIR                   stop it and delete DIR
# ADMIN_URL is a superuser's postgresql://user:password@127.0.0.1:PORT/db (as scripts/pg.sh prints); every role
# logs in through the pooler with its own password (auth_query). Installs Debian's pgbouncer when it is missing.
set -euo pipefail

cmd=${1:?usage: pgbouncer.sh start|restart|stop DIR ...}
dir=${2:?usage: pgbouncer.sh start|restart|stop DIR ...}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

run() {
  as_postgres pgbouncer -d "$dir/pgbouncer.ini" >/dev/null
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$(cat "$dir/port")") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  cat "$dir/pgbouncer.log" >&2
  exit 1
}

halt() {
  if [ -f "$dir/pgbouncer.pid" ]; then
    pid=$(cat "$dir/pgbouncer.pid")
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
}

case "$cmd" in
start)
  url=${3:?usage: pgbouncer.sh start DIR ADMIN_URL MODE}
  mode=${4:?usage: pgbouncer.sh start DIR ADMIN_URL MODE}
  if ! command -v pgbouncer >/dev/null; then
    echo "pgbouncer not found; installing it with apt-get..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq pgbouncer >&2
  fi
  # postgresql://USER:PASSWORD@HOST:PORT/DB
  rest=${url#*://}; creds=${rest%%@*}; hostport=${rest#*@}; hostport=${hostport%%/*}
  user=${creds%%:*}; password=${creds#*:}; host=${hostport%%:*}; server_port=${hostport##*:}
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
    || echo $((40000 + RANDOM % 20000)))
  # PgBouncer 1.21+ carries prepared statements in transaction mode, so a newer pooler would silently stop proving the prepared-statement-free path: off (1.18 refuses the unknown key, so only from 1.21).
  prepared=$(pgbouncer --version | awk 'NR == 1 { split($2, v, "."); if (v[1] > 1 || v[2] >= 21) print "max_prepared_statements = 0" }')
  mkdir -p "$dir"
  printf '"%s" "%s"\n' "$user" "$password" > "$dir/userlist.txt"
  printf '%s\n' "$port" > "$dir/port"
  cat > "$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=$server_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
pool_mode = $mode
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
auth_user = $user
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,options
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
$prepared
INI
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  chmod 600 "$dir/userlist.txt"
  run
  printf 'postgresql://%s:%s@127.0.0.1:%s/%s\n' "$user" "$password" "$port" "${rest#*/}"
  ;;
restart)
  halt
  sleep "${3:-0}"
  run
  ;;
stop)
  halt
  rm -rf "$dir"
  ;;
*)
  echo "usage: pgbouncer.sh start|restart|stop DIR ..." >&2
  exit 2
  ;;
esac
