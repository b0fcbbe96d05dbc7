using Microsoft.Extensions.DependencyInjection;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using TokenRefresh.IntegrationTests.Infrastructure;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// docker-compose.yml and the Dockerfile, checked with what runs here (no Docker engine): the compose file
/// parses, every reference in it resolves, and the settings it gives the service pass the service's own validation.
/// (scripts/check-images.sh builds the publish outputs the images copy.)
/// </summary>
public sealed partial class ContainerFilesTests
{
    private static readonly Dictionary<object, object> Compose = Load();

    private static Dictionary<object, object> Load()
    {
        using var reader = new StringReader(File.ReadAllText(Repo.File("docker-compose.yml")));
        return new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(new MergingParser(new Parser(reader)));
    }

    private static Dictionary<object, object> Services => (Dictionary<object, object>)Compose["services"];

    private static Dictionary<object, object> Service(string name) => (Dictionary<object, object>)Services[name];

    private static HashSet<string> DockerfileStages() =>
        StagePattern().Matches(File.ReadAllText(Repo.File("Dockerfile"))).Select(m => m.Groups[1].Value).ToHashSet();

    [Xunit.Fact]
    public void Compose_TheServiceAsTheOriginalRanIt_AndTheDemoInItsOwnProfile()
    {
        Assert.Equal(
            ["demo-azurite", "demo-cli", "demo-fakes", "demo-functions", "demo-grants", "demo-migrate", "demo-postgres", "token-refresh", "token-refresh-migrate"],
            Services.Keys.Cast<string>().Order());
        foreach (var (name, value) in Services)
        {
            var profiles = ((Dictionary<object, object>)value).TryGetValue("profiles", out var p) ? ((List<object>)p).Cast<string>().ToList() : [];
            Assert.Equal(((string)name).StartsWith("demo-", StringComparison.Ordinal) ? ["demo"] : [], profiles);
        }
    }

    [Xunit.Fact]
    public void Compose_TokenRefresh_ReadsTheUsersEnvFile_RestartsUnlessStopped_AndStopsWithoutLosingAPair()
    {
        var service = Service("token-refresh");
        var migrate = Service("token-refresh-migrate");
        var defaults = CycleSettings.Read(new SettingsReader(new ConfigurationBuilder().Build()));

        Assert.Equal(".env", service["env_file"]);
        Assert.Equal(".env", migrate["env_file"]);
        Assert.Equal(["run"], ((List<object>)service["command"]).Cast<string>());
        Assert.Equal(["migrate"], ((List<object>)migrate["command"]).Cast<string>());
        Assert.Equal("unless-stopped", service["restart"]);
        Assert.Equal("service_completed_successfully",
            ((Dictionary<object, object>)((Dictionary<object, object>)service["depends_on"])["token-refresh-migrate"])["condition"]);
        // A stop waits for the requests in flight and for their pairs to be stored.
        var grace = TimeSpan.FromSeconds(int.Parse(((string)service["stop_grace_period"]).TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(grace >= defaults.HttpTimeout + Persistence.DatabaseRetry.MinimumWindow, $"stop_grace_period {grace} is too short");
        // .env is never sent to an image build: its secrets reach the container as environment variables only.
        Assert.Contains(".env", File.ReadAllText(Repo.File(".dockerignore")).Split('\n').Select(l => l.Trim()));
    }

    [Xunit.Fact]
    public void Compose_TheServiceRunsAsTheLeastPrivilegeRole_MigrateAsTheOwner()
    {
        string User(string service) => new Uri((string)((Dictionary<object, object>)Service(service)["environment"])["DATABASE_URL"]).UserInfo.Split(':')[0];

        Assert.Equal("tokenrefresh", User("demo-cli"));
        Assert.Equal("tokenrefresh", User("demo-functions"));
        Assert.Equal("app", User("demo-migrate"));
        // The role the demo's database creates, with the password the service is given; its grants after migrate.
        var password = new Uri((string)((Dictionary<object, object>)Service("demo-cli")["environment"])["DATABASE_URL"]).UserInfo.Split(':')[1];
        Assert.Contains($"CREATE ROLE tokenrefresh LOGIN PASSWORD '{password}'", File.ReadAllText(Repo.File("scripts", "sql", "demo-role.sql")), StringComparison.Ordinal);
        Assert.Contains("/sql/service-grants.sql", (List<object>)Service("demo-grants")["command"]);
        Assert.Equal("service_completed_successfully",
            ((Dictionary<object, object>)((Dictionary<object, object>)Service("demo-grants")["depends_on"])["demo-migrate"])["condition"]);
        Assert.Equal("service_completed_successfully",
            ((Dictionary<object, object>)((Dictionary<object, object>)Service("demo-functions")["depends_on"])["demo-grants"])["condition"]);
        // The user's own service: migrate may use the owner's URL while the service uses a least-privilege one.
        Assert.Equal("${MIGRATE_DATABASE_URL:-${DATABASE_URL:-}}", ((Dictionary<object, object>)Service("token-refresh-migrate")["environment"])["DATABASE_URL"]);
        Assert.False(((Dictionary<object, object>)Service("token-refresh")).ContainsKey("environment"));
    }

    [Xunit.Fact]
    public void Railway_BuildsTheDefaultImage_MigratesBeforeDeploy_AndDrainsLongEnough()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Repo.File("railway.json")));
        var build = doc.RootElement.GetProperty("build");
        var deploy = doc.RootElement.GetProperty("deploy");

        Assert.Equal("https://railway.com/railway.schema.json", doc.RootElement.GetProperty("$schema").GetString());
        Assert.Equal("DOCKERFILE", build.GetProperty("builder").GetString());
        Assert.True(File.Exists(Repo.File(build.GetProperty("dockerfilePath").GetString()!)));
        // Railway builds the Dockerfile's default stage: the CLI, whose ENTRYPOINT and CMD are `tokenrefresh run`.
        Assert.EndsWith("AS cli", File.ReadAllLines(Repo.File("Dockerfile")).Last(l => l.StartsWith("FROM ", StringComparison.Ordinal)), StringComparison.Ordinal);
        Assert.False(deploy.TryGetProperty("startCommand", out _));
        Assert.Equal(["tokenrefresh migrate"], deploy.GetProperty("preDeployCommand").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("ON_FAILURE", deploy.GetProperty("restartPolicyType").GetString());
        // drainingSeconds: from SIGTERM to SIGKILL, as the compose stop_grace_period.
        Assert.Equal(JsonValueKind.Number, deploy.GetProperty("drainingSeconds").ValueKind);
        Assert.Equal(int.Parse(((string)Service("token-refresh")["stop_grace_period"]).TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture),
            deploy.GetProperty("drainingSeconds").GetInt32());
    }

    [Xunit.Fact]
    public void Compose_EveryBuildTargetIsADockerfileStage_AndEveryMountedFileExists()
    {
        var stages = DockerfileStages();
        foreach (var (name, value) in Services)
        {
            var service = (Dictionary<object, object>)value;
            if (service.TryGetValue("build", out var build))
            {
                Assert.Contains((string)((Dictionary<object, object>)build)["target"], stages);
            }

            foreach (var volume in service.TryGetValue("volumes", out var v) ? (List<object>)v : [])
            {
                var host = ((string)volume).Split(':')[0];
                Assert.True(File.Exists(Repo.File(host)), $"{name} mounts {host}, which does not exist");
            }
        }

        Assert.Equal(["cli", "cli-build", "fakes", "fakes-build", "functions", "functions-build", "sdk"], stages.Order());
        // `docker build -t token-refresh-service .` builds the CLI, running `run`, as the original's image did.
        Assert.EndsWith("AS cli", File.ReadAllLines(Repo.File("Dockerfile")).Last(l => l.StartsWith("FROM ", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Xunit.Fact]
    public void Compose_DependenciesAndSharedNetworksNameRealServices()
    {
        foreach (var (name, value) in Services)
        {
            var service = (Dictionary<object, object>)value;
            var dependencies = service.TryGetValue("depends_on", out var d)
                ? d is List<object> list ? list.Cast<string>() : ((Dictionary<object, object>)d).Keys.Cast<string>()
                : [];
            Assert.All(dependencies, dependency => Assert.True(Services.ContainsKey(dependency), $"{name} depends on unknown {dependency}"));
            if (service.TryGetValue("network_mode", out var mode))
            {
                Assert.True(Services.ContainsKey(((string)mode)["service:".Length..]), $"{name} shares an unknown service's network");
            }
        }

        // The fakes listen on the Function container's loopback, the only place plain http is accepted.
        Assert.Equal("service:demo-functions", Service("demo-fakes")["network_mode"]);
        Assert.Equal("service:demo-functions", Service("demo-cli")["network_mode"]);
        Assert.Contains("http://127.0.0.1:9000", (List<object>)Service("demo-fakes")["command"]);
    }

    [Xunit.Theory]
    [InlineData("demo-migrate")]
    [InlineData("demo-functions")]
    [InlineData("demo-cli")]
    public void Compose_TheServiceSettingsPassTheServicesOwnValidation(string name)
    {
        var environment = ((Dictionary<object, object>)Service(name)["environment"]).ToDictionary(kv => (string)kv.Key, kv => (string?)kv.Value);
        // Every setting, read as AddTokenRefresh reads them.
        var builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new());
        builder.Configuration.AddInMemoryCollection(environment);
        builder.AddTokenRefresh();
        using var host = builder.Build();

        Assert.Equal("http://127.0.0.1:9000/shopify/{shop}", host.Services.GetRequiredService<ShopifySettings>().ApiBaseUrl);
        Assert.Equal(new Uri("http://127.0.0.1:9000/"), host.Services.GetRequiredService<EtsySettings>().ApiBaseUrl);
    }

    [Xunit.Fact]
    public void Compose_FunctionsGetsWhatTheFunctionsHostNeeds()
    {
        var environment = (Dictionary<object, object>)Service("demo-functions")["environment"];

        Assert.Equal("dotnet-isolated", environment["FUNCTIONS_WORKER_RUNTIME"]);
        Assert.Contains("BlobEndpoint=http://demo-azurite:10000/", (string)environment["AzureWebJobsStorage"], StringComparison.Ordinal);
        Assert.Equal("0 */1 * * * *", environment["REFRESH_SCHEDULE"]);
        Assert.Equal(["migrate"], ((List<object>)Service("demo-migrate")["command"]).Cast<string>());
    }

    [Xunit.Fact]
    public void Dockerfile_CopiesOnlyPathsThatExist()
    {
        foreach (Match copy in CopyPattern().Matches(File.ReadAllText(Repo.File("Dockerfile"))))
        {
            var sources = copy.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..^1];
            Assert.All(sources, source => Assert.True(File.Exists(Repo.File(source)) || Directory.Exists(Repo.File(source)), $"COPY {source}: not in the repository"));
        }
    }

    [Xunit.Fact]
    public void Dockerfile_EachImageCompilesOnlyItsProject_OnTheBuildersPlatform_TheCliChiseledAndNonRoot()
    {
        var stages = DockerfileStageLines();

        Assert.StartsWith("--platform=$BUILDPLATFORM ", stages["sdk"].From, StringComparison.Ordinal);
        foreach (var (image, project) in new[] { ("cli", "src/TokenRefresh.Cli/"), ("functions", "src/TokenRefresh.Functions/"), ("fakes", "tests/TokenRefresh.FakePlatforms/") })
        {
            var build = stages[$"{image}-build"];
            Assert.Equal("sdk", build.From);
            // Only its own project and the core it references reach its build.
            var sources = build.Lines.Where(l => l.StartsWith("COPY ", StringComparison.Ordinal)).SelectMany(l => l.Split(' ')[1..^1]);
            Assert.All(sources, source => Assert.True(source.StartsWith(project, StringComparison.Ordinal) || source.StartsWith("src/TokenRefresh/", StringComparison.Ordinal)
                || !source.Contains('/', StringComparison.Ordinal), $"{image}-build copies {source}"));
            var publish = Assert.Single(build.Lines, l => l.StartsWith("RUN dotnet publish ", StringComparison.Ordinal));
            Assert.StartsWith($"RUN dotnet publish {project}", publish, StringComparison.Ordinal);
            // The image takes only its build's output.
            Assert.All(stages[image].Lines.Where(l => l.StartsWith("COPY ", StringComparison.Ordinal)),
                copy => Assert.StartsWith($"COPY --from={image}-build ", copy, StringComparison.Ordinal));
        }

        // The version and commit given as build arguments reach `--version` (scripts/check-images.sh runs it).
        Assert.Contains("ARG VERSION=1.0.0-local", stages["cli-build"].Lines);
        Assert.Contains("ARG COMMIT=unknown", stages["cli-build"].Lines);
        Assert.Contains(" -p:Version=$VERSION -p:SourceRevisionId=$COMMIT", Assert.Single(stages["cli-build"].Lines, l => l.StartsWith("RUN dotnet publish", StringComparison.Ordinal)), StringComparison.Ordinal);
        // Chiseled: no shell, so no RUN and an exec-form entry point; the non-root user the base image defines.
        var cli = stages["cli"];
        Assert.EndsWith("-chiseled", cli.From, StringComparison.Ordinal);
        Assert.DoesNotContain(cli.Lines, l => l.StartsWith("RUN ", StringComparison.Ordinal));
        Assert.Contains("USER $APP_UID", cli.Lines);
        Assert.Contains("ENTRYPOINT [\"tokenrefresh\"]", cli.Lines);
        Assert.Contains("RUN mkdir /out/bin && ln -s /app/TokenRefresh.Cli /out/bin/tokenrefresh", stages["cli-build"].Lines);
    }

    /// <summary>Each stage of the Dockerfile: the image it starts from, and its lines.</summary>
    private static Dictionary<string, (string From, List<string> Lines)> DockerfileStageLines()
    {
        var stages = new Dictionary<string, (string From, List<string> Lines)>();
        List<string>? current = null;
        foreach (var line in File.ReadAllLines(Repo.File("Dockerfile")).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')))
        {
            if (StagePattern().Match(line) is { Success: true } stage)
            {
                current = [];
                stages[stage.Groups[1].Value] = (line["FROM ".Length..line.LastIndexOf(" AS ", StringComparison.Ordinal)], current);
            }
            else
            {
                current?.Add(line);
            }
        }

        return stages;
    }

    [GeneratedRegex(@"^FROM (?:--platform=\S+ )?\S+ AS (\S+)$", RegexOptions.Multiline)]
    private static partial Regex StagePattern();

    [GeneratedRegex(@"^COPY (?!--from)(.+)$", RegexOptions.Multiline)]
    private static partial Regex CopyPattern();
}
