#!/usr/bin/env bash
# Runs every test from a clean clone: starts a throwaway PostgreSQL (installing the server, python3-dotenv,
# PgBouncer and openssl with apt-get when they are missing), builds the solution, publishes the container images'
# outputs (the integration tests run the published Function app under a stand-in for the Functions host, and the
# image's CLI), runs every test, then the short availability day (scripts/availability.sh --assert).
set -euo pipefail
cd "$(dirname "$0")/.."

# Started in the background (`./scripts/test.sh &`, nohup, some CI runners), a script ignores SIGINT, and so would every
# process it starts: the tests that stop the CLI with Ctrl+C's SIGINT would then wait for nothing. Run with it restored.
if [ -z "${TOKENREFRESH_TEST_SIGINT:-}" ]; then
  TOKENREFRESH_TEST_SIGINT=default exec env --default-signal=INT "$0" "$@"
fi

if ! command -v dotnet >/dev/null; then
  echo "The .NET 10 SDK is required (https://dot.net)." >&2
  exit 1
fi

# What the tests use besides PostgreSQL (scripts/pg.sh installs that): python-dotenv itself, for the .env
# conformance test, and a real PgBouncer, for the pooler tests. Installed once, before the tests run in parallel.
missing=()
/usr/bin/python3 -c 'import dotenv' 2>/dev/null || missing+=(python3-dotenv)
command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
fi

pgdir=$(mktemp -d /tmp/tokenrefresh-test-pg.XXXXXX)
images=$(mktemp -d /tmp/tokenrefresh-images.XXXXXX)
trap 'scripts/pg.sh stop "$pgdir"; rm -rf "$images"' EXIT
TEST_DATABASE_ADMIN_URL=$(scripts/pg.sh start "$pgdir")
export TEST_DATABASE_ADMIN_URL
echo "PostgreSQL started for the tests"

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet build TokenRefresh.sln -c Release -nologo -v quiet

status=0
# The container images, checked with what runs here: their publish outputs, and one release of the worker packages.
./scripts/check-images.sh "$images" || status=1
export TEST_FUNCTIONS_APP_DIR=$images/functions TEST_CLI_APP_DIR=$images/cli

log=$(mktemp /tmp/tokenrefresh-test-log.XXXXXX)
dotnet test TokenRefresh.sln -c Release --no-build -nologo 2>&1 | tee "$log" || status=1

# A short day of faults (about four minutes): the CLI as two replicas through PgBouncer, every fault once, and the
# availability targets asserted, so a regression in any guarantee fails here (docs/availability.md).
day=ok
./scripts/availability.sh --assert || { status=1; day="TARGETS MISSED"; }

# One closing line for people and CI: the totals over both test projects.
awk '/^(Passed|Failed)!/ {
       for (i = 1; i <= NF; i++) { v = $(i+1); gsub(",", "", v)
         if ($i == "Failed:") f += v; if ($i == "Passed:") p += v; if ($i == "Skipped:") s += v }
     } END { printf "%d passed, %d failed, %d skipped; availability day: %s\n", p, f, s, day }' day="$day" "$log"
rm -f "$log"
exit "$status"
