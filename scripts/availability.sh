#!/usr/bin/env bash
# Token availability through a compressed day of faults: the real service as two CLI replicas (`tokenrefresh run`) on
# one throwaway PostgreSQL through PgBouncer, against the fake platforms, which issue short-lived tokens and keep a
# ledger of which access token is valid when. Prints the report table (docs: docs/availability.md).
#   ./scripts/availability.sh                 the short run (a few minutes: 300 + 300 + 100 accounts, every fault once)
#   ./scripts/availability.sh --assert        the same, exiting 1 when a target is missed (./scripts/test.sh runs this)
#   ./scripts/availability.sh --full          10,000 Etsy users, 10,000 stores with non-expiring and 2,000 with expiring tokens
# Any other option goes to the harness (tests/TokenRefresh.Availability/Day.cs lists them), after --full's.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

args=()
for arg in "$@"; do
  if [ "$arg" = --full ]; then
    # An hour passes in 180 s; a cycle every 10 s (3.3 minutes of the day, near the 3-minute schedule); each non-expiring
    # token validated every 3 minutes (an hour of the day). Sized so that the steady state needs about half of what two
    # replicas beside the fakes do on two cores: a fault's recovery then shows the service, not an overloaded host.
    # Each fault gets 150 s to show its effect and its end.
    args+=(--etsy 10000 --stores 10000 --expiring 2000 --token-seconds 180 --cycle-seconds 10 --segment-seconds 150 --warmup-seconds 180
           --outage-seconds 90 --etsy-rate scaled --validate-minutes 3 --storm-seconds 30 --http-timeout-seconds 5 --sample-seconds 2 --reconnect-every-seconds 0.5)
  else
    args+=("$arg")
  fi
done

pgdir=$(mktemp -d /tmp/tokenrefresh-day-pg.XXXXXX)
bouncer=$(mktemp -d /tmp/tokenrefresh-day-pgbouncer.XXXXXX)
trap 'scripts/pgbouncer.sh stop "$bouncer"; scripts/pg.sh stop "$pgdir"' EXIT
admin_url=$(scripts/pg.sh start "$pgdir")
scripts/pgbouncer.sh start "$bouncer" "$admin_url" transaction >/dev/null
for project in src/TokenRefresh.Cli tests/TokenRefresh.Availability; do
  dotnet build "$project" -c Release -nologo -v quiet >/dev/null
done
dotnet tests/TokenRefresh.Availability/bin/Release/net10.0/TokenRefresh.Availability.dll "$admin_url" "$pgdir" "$bouncer" "${args[@]}"
