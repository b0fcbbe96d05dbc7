# syntax=docker/dockerfile:1
# Three images, each compiling only its own project:
#   docker build -t token-refresh-service .                      the standalone CLI running `run` (the default: the last
#                                                                stage), as the original's image ran; Railway builds it too
#   docker build -t tokenrefresh-functions --target functions .  the Azure Functions app
#   docker build -t tokenrefresh-fakes --target fakes .          the fake Etsy and Shopify servers (the compose demo)
# Add --build-arg VERSION=1.4.0 --build-arg COMMIT=$(git rev-parse --short HEAD) for `tokenrefresh --version` to show
# them (.dockerignore keeps .git out of the build). scripts/check-images.sh runs this file's `dotnet publish` commands
# here, where no Docker engine runs.

# The SDK runs on the builder's own platform (no emulation for an arm64 image); each publish targets $TARGETARCH.
FROM --platform=$BUILDPLATFORM mcr.microsoft.com/dotnet/sdk:10.0 AS sdk
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props .editorconfig ./
COPY src/TokenRefresh/TokenRefresh.csproj src/TokenRefresh/

FROM sdk AS cli-build
ARG TARGETARCH
ARG VERSION=1.0.0-local
ARG COMMIT=unknown
# Project files first, so the restore layer is cached until a dependency changes.
COPY src/TokenRefresh.Cli/TokenRefresh.Cli.csproj src/TokenRefresh.Cli/
RUN dotnet restore src/TokenRefresh.Cli/TokenRefresh.Cli.csproj -a $TARGETARCH
COPY src/TokenRefresh/ src/TokenRefresh/
COPY src/TokenRefresh.Cli/ src/TokenRefresh.Cli/
# Self-contained and compiled ahead of time for the image's architecture (amd64, arm64): TokenRefresh.Cli.csproj says why.
RUN dotnet publish src/TokenRefresh.Cli/TokenRefresh.Cli.csproj -c Release -a $TARGETARCH --no-restore -o /out/cli -p:Version=$VERSION -p:SourceRevisionId=$COMMIT
# The name the image answers to: a link the final stage copies as a link (it has no shell to make one).
RUN mkdir /out/bin && ln -s /app/TokenRefresh.Cli /out/bin/tokenrefresh

FROM sdk AS functions-build
ARG VERSION=1.0.0-local
ARG COMMIT=unknown
COPY host.json ./
COPY src/TokenRefresh.Functions/TokenRefresh.Functions.csproj src/TokenRefresh.Functions/
RUN dotnet restore src/TokenRefresh.Functions/TokenRefresh.Functions.csproj
COPY src/TokenRefresh/ src/TokenRefresh/
COPY src/TokenRefresh.Functions/ src/TokenRefresh.Functions/
RUN dotnet publish src/TokenRefresh.Functions/TokenRefresh.Functions.csproj -c Release --no-restore -o /out/functions -p:Version=$VERSION -p:SourceRevisionId=$COMMIT

FROM sdk AS fakes-build
COPY tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj tests/TokenRefresh.FakePlatforms/
RUN dotnet restore tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj
COPY tests/TokenRefresh.FakePlatforms/ tests/TokenRefresh.FakePlatforms/
RUN dotnet publish tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj -c Release --no-restore -o /out/fakes

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS fakes
WORKDIR /app
COPY --from=fakes-build /out/fakes .
USER $APP_UID
ENTRYPOINT ["dotnet", "TokenRefresh.FakePlatforms.dll"]
CMD ["--urls", "http://0.0.0.0:9000"]

FROM mcr.microsoft.com/azure-functions/dotnet-isolated:4-dotnet-isolated10.0 AS functions
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    REFRESH_SCHEDULE="0 */3 * * * *"
COPY --from=functions-build /out/functions /home/site/wwwroot

# Chiseled: the libraries .NET needs and nothing else (no shell, no package manager; the CLI brings its own .NET), running
# as the non-root `app`.
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled AS cli
WORKDIR /app
COPY --from=cli-build /out/cli .
COPY --from=cli-build /out/bin/ /usr/local/bin/
# `run` rewrites the heartbeat after each cycle with the time by which the next one will have ended; `health` fails
# once that time has passed (a stuck process, or a database that has failed every cycle since). /tmp: writable by $APP_UID.
ENV HEARTBEAT_FILE=/tmp/tokenrefresh.heartbeat
HEALTHCHECK --interval=1m --timeout=10s --start-period=1m --retries=2 CMD ["tokenrefresh", "health"]
USER $APP_UID
ENTRYPOINT ["tokenrefresh"]
CMD ["run"]
