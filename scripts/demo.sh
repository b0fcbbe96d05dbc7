#!/usr/bin/env bash
# The main job end to end, with no credentials: a throwaway PostgreSQL with sample rows, the fake
# Etsy and Shopify servers, one refresh cycle through the real CLI, and the rows before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

work=$(mktemp -d /tmp/tokenrefresh-demo.XXXXXX)
pgdir=$(mktemp -d /tmp/tokenrefresh-demo-pg.XXXXXX)
fake_pid=
cleanup() {
  [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null || true
  scripts/pg.sh stop "$pgdir"
  rm -rf "$work"
}
trap cleanup EXIT

echo "== Building"
dotnet build TokenRefresh.sln -c Release -nologo -v quiet >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }

echo "== Starting a throwaway PostgreSQL with the main application's tables and sample rows"
admin_url=$(scripts/pg.sh start "$pgdir")
psql=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/psql
[ -x "$psql" ] || psql=psql
"$psql" -q "$admin_url" -c "CREATE DATABASE demo"
# A session time zone other than UTC, as many servers have: the original schema's timestamps still hold UTC.
"$psql" -q "$admin_url" -c "ALTER DATABASE demo SET TimeZone = 'America/New_York'"
db_url=${admin_url%/postgres}/demo
"$psql" -q "$db_url" -v ON_ERROR_STOP=1 -f scripts/sql/app-tables.sql -f scripts/sql/shopify-expiring-tokens.sql -f scripts/sql/demo-data.sql

fake_env() {
  env ETSY_CLIENT_ID=fake-etsy-keystring ETSY_CLIENT_SECRET=fake-etsy-shared-secret \
    SHOPIFY_API_KEY=fake-shopify-api-key SHOPIFY_API_SECRET=fake-shopify-api-secret \
    ETSY_API_BASE_URL="$fake_url" SHOPIFY_API_BASE_URL="$fake_url/shopify/{shop}" "$@"
}

echo "== tokenrefresh migrate (as the tables' owner), then a least-privilege role for the service"
fake_url=http://127.0.0.1:9 # not called by migrate
DATABASE_URL="$db_url" fake_env dotnet src/TokenRefresh.Cli/bin/Release/net10.0/TokenRefresh.Cli.dll migrate
service_password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
"$psql" -q "$db_url" -v ON_ERROR_STOP=1 -c "CREATE ROLE tokenrefresh LOGIN PASSWORD '$service_password'" -f scripts/sql/service-grants.sql
service_url=$(printf '%s' "$db_url" | sed "s|//postgres:[^@]*@|//tokenrefresh:$service_password@|")

echo "== Starting the fake Etsy and Shopify servers"
dotnet tests/TokenRefresh.FakePlatforms/bin/Release/net10.0/TokenRefresh.FakePlatforms.dll \
  --urls http://127.0.0.1:0 --seed scripts/demo-seed.json >"$work/fake.log" 2>&1 &
fake_pid=$!
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/fake.log" && break
  kill -0 "$fake_pid" 2>/dev/null || { cat "$work/fake.log"; exit 1; }
  sleep 0.1
done
fake_url=$(sed -n 's/^Fake platforms listening on //p' "$work/fake.log")
[ -n "$fake_url" ] || { echo "The fake platforms did not start"; cat "$work/fake.log"; exit 1; }

# Tokens are never shown: a fingerprint (first 8 hex digits of their MD5) shows which changed. The original
# schema's timestamps are `timestamp` holding UTC; the expiring-token columns are timestamptz.
show_rows() {
  "$psql" -q "$db_url" -P pager=off -c "
    SELECT user_id, left(md5(access_token), 8) AS access_fp, left(md5(refresh_token), 8) AS refresh_fp,
           to_char(token_expires_at, 'MM-DD HH24:MI:SS') AS expires_utc, to_char(updated_at, 'MM-DD HH24:MI:SS') AS updated_utc
    FROM etsy_users ORDER BY user_id" -c "
    SELECT id, shop_domain, left(md5(access_token), 8) AS access_fp, left(md5(refresh_token), 8) AS refresh_fp,
           to_char(token_expires_at AT TIME ZONE 'UTC', 'MM-DD HH24:MI:SS') AS expires_utc,
           to_char(refresh_token_expires_at AT TIME ZONE 'UTC', 'MM-DD') AS refresh_ends,
           is_active, to_char(updated_at, 'MM-DD HH24:MI:SS') AS updated_utc
    FROM shopify_stores ORDER BY id"
}

echo "== Rows before (now: $(date -u +%H:%M:%S) UTC)"
show_rows

echo "== One refresh cycle: tokenrefresh once (as the least-privilege role)"
status=0
DATABASE_URL="$service_url" fake_env dotnet src/TokenRefresh.Cli/bin/Release/net10.0/TokenRefresh.Cli.dll once || status=$?
echo "(exit code $status: 0 = every account fine, 1 = some accounts failed, 2 = could not run)"

echo "== Rows after"
show_rows

echo "== tokenrefresh status"
DATABASE_URL="$service_url" fake_env dotnet src/TokenRefresh.Cli/bin/Release/net10.0/TokenRefresh.Cli.dll status

echo "== tokenrefresh shopify migrate-expiring --all --dry-run (what moving to expiring tokens would do)"
DATABASE_URL="$service_url" fake_env dotnet src/TokenRefresh.Cli/bin/Release/net10.0/TokenRefresh.Cli.dll shopify migrate-expiring --all --dry-run 2>&1 \
  | grep -v "expiring offline tokens: supported"
[ "$status" -le 1 ]
