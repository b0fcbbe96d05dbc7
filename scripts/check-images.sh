#!/usr/bin/env bash
# What can be checked of the container images without a Docker engine: run the Dockerfile's own
# `dotnet publish` commands (read from the Dockerfile, so they cannot drift) and check that each output
# holds what its image starts. docker-compose.yml is checked by the integration tests (ContainerFilesTests).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d /tmp/tokenrefresh-images.XXXXXX)
trap 'rm -rf "$out"' EXIT

grep -E '^RUN dotnet publish ' Dockerfile | sed -e 's/^RUN //' -e 's/ --no-restore//' -e "s| -o /out/| -o $out/|" | while read -r cmd; do
  echo "+ $cmd"
  $cmd -nologo -v quiet >"$out/publish.log" 2>&1 || { cat "$out/publish.log"; exit 1; }
done

check() { [ -e "$out/$1" ] || { echo "missing in the image: $1" >&2; exit 1; }; }
check functions/TokenRefresh.Functions.dll
check functions/functions.metadata
check functions/worker.config.json
check functions/host.json
check functions/extensions.json
check cli/TokenRefresh.Cli.dll
check cli/TokenRefresh.Cli
check fakes/TokenRefresh.FakePlatforms.dll
grep -q '"schedule": "%REFRESH_SCHEDULE%"' "$out/functions/functions.metadata" || { echo "the timer's schedule is not %REFRESH_SCHEDULE%" >&2; exit 1; }
grep -q '"delayInterval": "00:01:00"' "$out/functions/functions.metadata" || { echo "the retry policy is not in functions.metadata" >&2; exit 1; }
[ ! -e "$out/functions/local.settings.json" ] || { echo "local.settings.json must not be published" >&2; exit 1; }
echo "images: the three publish outputs hold what the images run"
