#!/usr/bin/env bash
# The benchmark: one refresh cycle over N due Etsy users and N active Shopify stores on a throwaway
# PostgreSQL, against the fake platforms with a set latency, through the production wiring.
#   ./scripts/bench.sh                  the README's table (10,000 + 10,000 at 50 ms and at 0 ms, round trips)
#   ./scripts/bench.sh N LATENCY_MS C [--round-trips] [--pgbouncer MODE] [--url-query QUERY]
#                                       one run: N + N accounts, latency, REFRESH_MAX_CONCURRENCY; through a PgBouncer
#                                       (transaction or session mode); with QUERY added to DATABASE_URL (max_auto_prepare=32)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

pgdir=$(mktemp -d /tmp/tokenrefresh-bench-pg.XXXXXX)
bouncer=$(mktemp -d /tmp/tokenrefresh-bench-pgbouncer.XXXXXX)
trap 'scripts/pgbouncer.sh stop "$bouncer"; scripts/pg.sh stop "$pgdir"' EXIT
admin_url=$(scripts/pg.sh start "$pgdir")
dotnet build tests/TokenRefresh.Benchmarks -c Release -nologo -v quiet >/dev/null
bench() { dotnet tests/TokenRefresh.Benchmarks/bin/Release/net10.0/TokenRefresh.Benchmarks.dll "$admin_url" "$@"; }

echo "| accounts (Etsy + Shopify) | latency | concurrency | wall time | latency bound | ratio | accounts/s | CPU ms/account | DB round trips/account | peak memory |"
echo "|---|---|---|---|---|---|---|---|---|---|"
if [ $# -ge 3 ]; then
  n=$1 latency=$2 concurrency=$3
  shift 3
  extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --pgbouncer) pooler_url=$(scripts/pgbouncer.sh start "$bouncer" "$admin_url" "$2"); extra+=(--pooler-port "$(cat "$bouncer/port")"); shift 2 ;;
      --url-query) extra+=(--url-query "$2"); shift 2 ;;
      --round-trips) extra+=(--round-trips); shift ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  bench "$n" "$n" "$latency" "$concurrency" "${extra[@]}" | grep '^|'
else
  bench 10000 10000 50 16 | grep '^|'
  bench 10000 10000 50 32 | grep '^|'
  bench 10000 10000 50 64 | grep '^|'
  bench 10000 10000 0 16 | grep '^|'
  bench 1000 0 0 16 --round-trips | grep '^|'
  bench 0 1000 0 16 --round-trips | grep '^|'
fi
