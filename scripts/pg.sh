#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on 127.0.0.1 for tests, the demo and the benchmark.
#   scripts/pg.sh start DIR   initdb + start in DIR (fsync off); prints the admin URL on stdout
#   scripts/pg.sh restart DIR [SECONDS]  stop it fast (sessions are cut) and start it again on the same port, after
#                                        SECONDS down (default 0)
#   scripts/pg.sh stop DIR    stop it and delete DIR
# Installs the PostgreSQL server from Debian's packages when its binaries are missing.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop DIR}
dir=${2:?usage: pg.sh start|stop DIR}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# The server's options: loopback only, on PORT, its socket in DIR, and no durability (a throwaway cluster).
options() {
  echo "-c listen_addresses=127.0.0.1 -p $1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
}

case "$cmd" in
start)
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "PostgreSQL server binaries not found; installing them with apt-get..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
  fi
  bin=$(pg_bin)
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi

  mkdir -p "$dir"
  password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  printf '%s\n' "$password" > "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown -R postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile="$dir/pwfile" -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"

  # A free port: ask the kernel for one, then let PostgreSQL take it.
  for _ in 1 2 3 4 5; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()' 2>/dev/null \
      || echo $((20000 + RANDOM % 20000)))
    if as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o "$(options "$port")" >/dev/null; then
      printf 'postgresql://postgres:%s@127.0.0.1:%s/postgres\n' "$password" "$port" > "$dir/admin-url"
      [ "$(id -u)" = 0 ] && chown postgres "$dir/admin-url"
      chmod 600 "$dir/admin-url"
      cat "$dir/admin-url"
      exit 0
    fi
  done
  cat "$dir/server.log" >&2
  exit 1
  ;;
restart)
  port=$(sed -E 's#.*:([0-9]+)/postgres$#\1#' "$dir/admin-url")
  as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 30 stop >/dev/null
  sleep "${3:-0}"
  as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o "$(options "$port")" >/dev/null
  ;;
stop)
  bin=$(pg_bin)
  if [ -d "$dir/data" ]; then
    as_postgres "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: pg.sh start|restart|stop DIR" >&2
  exit 2
  ;;
esac
