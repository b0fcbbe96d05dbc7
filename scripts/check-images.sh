#!/usr/bin/env bash
# What can be checked of the container images without a Docker engine: run the Dockerfile's own
# `dotnet publish` commands (read from the Dockerfile, so they cannot drift) and check that each output
# holds what its image starts. docker-compose.yml is checked by the integration tests (ContainerFilesTests).
#   scripts/check-images.sh [DIR]   publishes into DIR and keeps it (./scripts/test.sh then runs the Function
#                                   app from DIR/functions), or into a temporary folder that is removed
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${1:-}" ]; then
  out=$1
  mkdir -p "$out"
else
  out=$(mktemp -d /tmp/tokenrefresh-images.XXXXXX)
  trap 'rm -rf "$out"' EXIT
fi

# TARGETARCH as docker build sets it for this machine's architecture; VERSION and COMMIT as a release build passes them.
case "$(uname -m)" in aarch64|arm64) arch=arm64 ;; *) arch=amd64 ;; esac
version=0.0.0-check
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
grep -E '^RUN dotnet publish ' Dockerfile | sed -e 's/^RUN //' -e 's/ --no-restore//' -e "s| -o /out/| -o $out/|" -e "s/\$TARGETARCH/$arch/g" \
  -e "s/\$VERSION/$version/g" -e "s/\$COMMIT/$commit/g" | while read -r cmd; do
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
# The CLI brings its own .NET, compiled ahead of time with it as one image, tiered compilation off (TokenRefresh.Cli.csproj).
check cli/libcoreclr.so
check cli/TokenRefresh.Cli.r2r.dll
grep -q '"System.Runtime.TieredCompilation": false' "$out/cli/TokenRefresh.Cli.runtimeconfig.json" || { echo "the CLI's tiered compilation is not off" >&2; exit 1; }
shown=$("$out/cli/TokenRefresh.Cli" --version)
[ "$shown" = "$version+$commit" ] || { echo "--version shows '$shown', not the build arguments' $version+$commit" >&2; exit 1; }
grep -q '"schedule": "%REFRESH_SCHEDULE%"' "$out/functions/functions.metadata" || { echo "the timer's schedule is not %REFRESH_SCHEDULE%" >&2; exit 1; }
grep -q '"delayInterval": "00:01:00"' "$out/functions/functions.metadata" || { echo "the retry policy is not in functions.metadata" >&2; exit 1; }
[ ! -e "$out/functions/local.settings.json" ] || { echo "local.settings.json must not be published" >&2; exit 1; }

# The worker's core packages ship together: Grpc of one release calling Core of another fails every
# invocation with MissingMethodException (it did, with Worker/Grpc 2.51.0 beside Core 2.52.0).
versions=$(grep -oE '"Microsoft\.Azure\.Functions\.Worker(\.Core|\.Grpc)?/[^"]+"' "$out/functions/TokenRefresh.Functions.deps.json" \
  | tr -d '"' | sort -u)
echo "$versions" | sed 's/^/  resolved: /'
[ "$(echo "$versions" | wc -l)" = 3 ] && [ "$(echo "$versions" | cut -d/ -f2 | sort -u | wc -l)" = 1 ] || {
  echo "the Functions worker packages (Worker, Worker.Core, Worker.Grpc) are not one release; pin them together in Directory.Packages.props" >&2
  exit 1
}
echo "images: the three publish outputs hold what the images run; --version shows $shown; the worker packages are one release"
