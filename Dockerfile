# syntax=docker/dockerfile:1
# Three images from one build:
#   docker build -t token-refresh-service .                      the standalone CLI running `run` (the default: the last
#                                                                stage), as the original's image ran; Railway builds it too
#   docker build -t tokenrefresh-functions --target functions .  the Azure Functions app
#   docker build -t tokenrefresh-fakes --target fakes .          the fake Etsy and Shopify servers (the compose demo)
# scripts/check-images.sh runs this file's `dotnet publish` commands here, where no Docker engine runs.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
# The image's architecture (amd64, arm64): the CLI is compiled ahead of time for it.
ARG TARGETARCH
WORKDIR /src
# Project files first, so the restore layer is cached until a dependency changes.
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig host.json ./
COPY src/TokenRefresh/TokenRefresh.csproj src/TokenRefresh/
COPY src/TokenRefresh.Functions/TokenRefresh.Functions.csproj src/TokenRefresh.Functions/
COPY src/TokenRefresh.Cli/TokenRefresh.Cli.csproj src/TokenRefresh.Cli/
COPY tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj tests/TokenRefresh.FakePlatforms/
RUN dotnet restore src/TokenRefresh.Functions/TokenRefresh.Functions.csproj \
 && dotnet restore src/TokenRefresh.Cli/TokenRefresh.Cli.csproj -a $TARGETARCH \
 && dotnet restore tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj
COPY src/ src/
COPY tests/TokenRefresh.FakePlatforms/ tests/TokenRefresh.FakePlatforms/
RUN dotnet publish src/TokenRefresh.Functions/TokenRefresh.Functions.csproj -c Release --no-restore -o /out/functions
RUN dotnet publish src/TokenRefresh.Cli/TokenRefresh.Cli.csproj -c Release -a $TARGETARCH --no-self-contained --no-restore -o /out/cli
RUN dotnet publish tests/TokenRefresh.FakePlatforms/TokenRefresh.FakePlatforms.csproj -c Release --no-restore -o /out/fakes

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS fakes
WORKDIR /app
COPY --from=build /out/fakes .
USER $APP_UID
ENTRYPOINT ["dotnet", "TokenRefresh.FakePlatforms.dll"]
CMD ["--urls", "http://0.0.0.0:9000"]

FROM mcr.microsoft.com/azure-functions/dotnet-isolated:4-dotnet-isolated10.0 AS functions
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    REFRESH_SCHEDULE="0 */3 * * * *"
COPY --from=build /out/functions /home/site/wwwroot

FROM mcr.microsoft.com/dotnet/runtime:10.0 AS cli
WORKDIR /app
COPY --from=build /out/cli .
RUN ln -s /app/TokenRefresh.Cli /usr/local/bin/tokenrefresh
# `run` rewrites the heartbeat after each cycle with the time by which the next one will have ended; `health` fails
# once that time has passed (a stuck process, or a database that has failed every cycle since). /tmp: writable by $APP_UID.
ENV HEARTBEAT_FILE=/tmp/tokenrefresh.heartbeat
HEALTHCHECK --interval=1m --timeout=10s --start-period=1m --retries=2 CMD ["tokenrefresh", "health"]
USER $APP_UID
ENTRYPOINT ["tokenrefresh"]
CMD ["run"]
