# syntax=docker/dockerfile:1
# Two images from one build:
#   docker build -t tokenrefresh-functions .            the Azure Functions app (default, last stage)
#   docker build -t tokenrefresh-cli --target cli .     the standalone CLI running `run` (no Functions host)

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
# Project files first, so the restore layer is cached until a dependency changes.
COPY global.json Directory.Build.props Directory.Packages.props .editorconfig host.json ./
COPY src/TokenRefresh/TokenRefresh.csproj src/TokenRefresh/
COPY src/TokenRefresh.Functions/TokenRefresh.Functions.csproj src/TokenRefresh.Functions/
COPY src/TokenRefresh.Cli/TokenRefresh.Cli.csproj src/TokenRefresh.Cli/
RUN dotnet restore src/TokenRefresh.Functions/TokenRefresh.Functions.csproj \
 && dotnet restore src/TokenRefresh.Cli/TokenRefresh.Cli.csproj
COPY src/ src/
RUN dotnet publish src/TokenRefresh.Functions -c Release --no-restore -o /out/functions \
 && dotnet publish src/TokenRefresh.Cli -c Release --no-restore -o /out/cli

FROM mcr.microsoft.com/dotnet/runtime:10.0 AS cli
WORKDIR /app
COPY --from=build /out/cli .
RUN ln -s /app/TokenRefresh.Cli /usr/local/bin/tokenrefresh
USER $APP_UID
ENTRYPOINT ["tokenrefresh"]
CMD ["run"]

FROM mcr.microsoft.com/azure-functions/dotnet-isolated:4-dotnet-isolated10.0 AS functions
ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    REFRESH_SCHEDULE="0 */3 * * * *"
COPY --from=build /out/functions /home/site/wwwroot
