#!/usr/bin/env bash
# The benchmark: one refresh cycle over N due Etsy users and N active Shopify stores on a throwaway PostgreSQL,
# against the fake platforms (a process of their own) with a set latency, through the production wiring.
#   ./scripts/bench.sh                  docs/performance.md's table: 10,000 + 10,000 at 50 ms (concurrency 16, 32, 64) and at
#                                       0 ms; the CLI process (the image's build) over 3,000 + 3,000 and 10,000 + 10,000
#                                       at 50 ms, concurrency 32; the floor over 3,000 + 3,000 (JIT-compiled and native:
#                                       Native AOT needs clang and zlib1g-dev, which it installs with apt-get if missing);
#                                       the same backlog under Etsy's default limit (10/s) with a 30 s budget; round trips
#   ./scripts/bench.sh --cpu             the CPU figures side by side: the CLI `once` and the floor over 3,000 + 3,000 at 50 ms,
#                                       concurrency 32, and `run` in its steady state (below)
#   ./scripts/bench.sh N LATENCY_MS C --run CYCLES
#                                       `tokenrefresh run` (the image's build) in its steady state: CPU per platform call over
#                                       CYCLES cycles after its first two, every Etsy user due again each cycle
#   ./scripts/bench.sh N LATENCY_MS C [--cli] [--etsy-rate R] [--budget S] [--round-trips] [--pgbouncer MODE] [--url-query QUERY] [--floor|--floor-aot]
#                                       one run: N + N accounts, latency, REFRESH_MAX_CONCURRENCY; as the CLI process;
#                                       with ETSY_MAX_REQUESTS_PER_SECOND=R (by default lifted to 100,000) and
#                                       CYCLE_BUDGET_SECONDS=S (by default an hour); through a PgBouncer (transaction or
#                                       session mode); with QUERY added to DATABASE_URL (max_auto_prepare=32);
#                                       or, instead of the service, the floor: only the platform calls and the UPDATE of
#                                       each refreshed row, in plain .NET (tests/TokenRefresh.Floor), JIT-compiled or native
#   ./scripts/bench.sh --scale [STORES] [ETSY_USERS] [--indexes]
#                                       the original's tables at scale (1,000,000 stores, 100,000 Etsy users): the first
#                                       start, steady cycles, `status`, deleted accounts, statements over 200 ms with plans
#   ./scripts/bench.sh --migrate-expiring [N] [LATENCY_MS] [C]
#                                       `tokenrefresh shopify migrate-expiring --all --yes` over N stores (5,000), 1 in 100
#                                       answers lost once and 1 in 100 stores uninstalled, LATENCY_MS a call (100), at
#                                       SHOPIFY_MAX_CONCURRENCY=C (16): straight through, then stopped at 40% and run again
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

pgdir=$(mktemp -d /tmp/tokenrefresh-bench-pg.XXXXXX)
bouncer=$(mktemp -d /tmp/tokenrefresh-bench-pgbouncer.XXXXXX)
images=$(mktemp -d /tmp/tokenrefresh-bench-images.XXXXXX)
trap 'scripts/pgbouncer.sh stop "$bouncer"; scripts/pg.sh stop "$pgdir"; rm -rf "$images"' EXIT
admin_url=$(scripts/pg.sh start "$pgdir")
for project in tests/TokenRefresh.Benchmarks tests/TokenRefresh.FakePlatforms tests/TokenRefresh.Floor src/TokenRefresh.Cli; do
  dotnet build "$project" -c Release -nologo -v quiet >/dev/null
done
# The CLI as its image runs it: the Dockerfile's publish (its own .NET, compiled ahead of time for this machine) started as
# the program itself, made when a row needs it.
cli=(--cli-dll "$images/cli/TokenRefresh.Cli")
publish_cli() { [ -e "$images/cli/TokenRefresh.Cli" ] || scripts/check-images.sh "$images" >/dev/null; }
# The floor compiled natively (Native AOT links with clang, and zlib), made when a row needs it.
floor_aot=(--floor-exe "$images/floor/TokenRefresh.Floor")
publish_floor_aot() {
  if [ ! -e "$images/floor/TokenRefresh.Floor" ]; then
    command -v clang >/dev/null && [ -e /usr/include/zlib.h ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang zlib1g-dev; } >/dev/null
    dotnet publish tests/TokenRefresh.Floor -c Release -r "linux-$(uname -m | sed 's/x86_64/x64/;s/aarch64/arm64/')" -p:PublishAot=true \
      -o "$images/floor" -nologo -v quiet >/dev/null
  fi
}
bench() { dotnet tests/TokenRefresh.Benchmarks/bin/Release/net10.0/TokenRefresh.Benchmarks.dll "$admin_url" "$@"; }

if [ "${1:-}" = --scale ]; then
  shift
  stores=${1:-1000000} users=${2:-100000}
  shift $(( $# < 2 ? $# : 2 ))
  bench --scale "$pgdir/server.log" "$stores" "$users" "$@"
  exit
fi

if [ "${1:-}" = --migrate-expiring ]; then
  bench --migrate-expiring "${2:-5000}" "${3:-100}" "${4:-16}"
  exit
fi

echo "| run | accounts (Etsy + Shopify) | latency | concurrency | Etsy limit | wall time | bound | ratio | Etsy time | Shopify time | accounts/s | service CPU ms/account | DB round trips/account | peak memory |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
if [ "${1:-}" = --cpu ]; then
  # The CPU target's three figures in one run, on the same machine at the same moment: the CLI's one cycle, the floor's,
  # and `run` in its steady state.
  publish_cli
  bench 3000 3000 50 32 "${cli[@]}" | grep '^|'
  bench 3000 3000 50 32 --floor | grep '^|'
  echo
  bench 3000 3000 50 32 "${cli[@]}" --run 3 | grep '^`run`'
elif [ $# -ge 3 ]; then
  n=$1 latency=$2 concurrency=$3
  shift 3
  extra=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --pgbouncer) scripts/pgbouncer.sh start "$bouncer" "$admin_url" "$2" >/dev/null; extra+=(--pooler-port "$(cat "$bouncer/port")"); shift 2 ;;
      --url-query|--etsy-rate|--budget) extra+=("$1" "$2"); shift 2 ;;
      --cli) publish_cli; extra+=("${cli[@]}"); shift ;;
      --run) publish_cli; extra+=("${cli[@]}" --run "$2"); shift 2 ;;
      --round-trips|--floor) extra+=("$1"); shift ;;
      --floor-aot) publish_floor_aot; extra+=("${floor_aot[@]}"); shift ;;
      *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  bench "$n" "$n" "$latency" "$concurrency" "${extra[@]}" | grep '^[|`]'
else
  bench 10000 10000 50 16 | grep '^|'
  bench 10000 10000 50 32 | grep '^|'
  bench 10000 10000 50 64 | grep '^|'
  bench 10000 10000 0 16 | grep '^|'
  publish_cli
  bench 3000 3000 50 32 "${cli[@]}" | grep '^|'
  bench 10000 10000 50 32 "${cli[@]}" | grep '^|'
  bench 3000 3000 50 32 --floor | grep '^|'
  publish_floor_aot
  bench 3000 3000 50 32 "${floor_aot[@]}" | grep '^|'
  bench 3000 3000 50 16 --etsy-rate 10 --budget 30 | grep '^|'
  bench 1000 0 0 16 --round-trips | grep '^|'
  bench 0 1000 0 16 --round-trips | grep '^|'
  echo
  bench 3000 3000 50 32 "${cli[@]}" --run 3 | grep '^`run`'
fi
