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

    [Fact]
    public void Compose_HasTheWholeStack()
    {
        Assert.Equal(["azurite", "cli", "fakes", "functions", "migrate", "postgres"], Services.Keys.Cast<string>().Order());
    }

    [Fact]
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

        Assert.Equal(["build", "cli", "fakes", "functions"], stages.Order());
        Assert.EndsWith("AS functions", File.ReadAllLines(Repo.File("Dockerfile")).Last(l => l.StartsWith("FROM ", StringComparison.Ordinal)), StringComparison.Ordinal);
    }

    [Fact]
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
        Assert.Equal("service:functions", Service("fakes")["network_mode"]);
        Assert.Contains("http://127.0.0.1:9000", (List<object>)Service("fakes")["command"]);
    }

    [Theory]
    [InlineData("migrate")]
    [InlineData("functions")]
    [InlineData("cli")]
    public void Compose_TheServiceSettingsPassTheServicesOwnValidation(string name)
    {
        var environment = ((Dictionary<object, object>)Service(name)["environment"]).ToDictionary(kv => (string)kv.Key, kv => (string?)kv.Value);
        var options = TokenRefreshOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(environment).Build());

        Assert.Equal("http://127.0.0.1:9000/shopify/{shop}", options.ShopifyApiBaseUrl);
        Assert.Equal(new Uri("http://127.0.0.1:9000/"), options.EtsyApiBaseUrl);
    }

    [Fact]
    public void Compose_FunctionsGetsWhatTheFunctionsHostNeeds()
    {
        var environment = (Dictionary<object, object>)Service("functions")["environment"];

        Assert.Equal("dotnet-isolated", environment["FUNCTIONS_WORKER_RUNTIME"]);
        Assert.Contains("BlobEndpoint=http://azurite:10000/", (string)environment["AzureWebJobsStorage"], StringComparison.Ordinal);
        Assert.Equal("0 */1 * * * *", environment["REFRESH_SCHEDULE"]);
        Assert.Equal("service_completed_successfully", ((Dictionary<object, object>)((Dictionary<object, object>)Service("functions")["depends_on"])["migrate"])["condition"]);
        Assert.Equal(["migrate"], ((List<object>)Service("migrate")["command"]).Cast<string>());
    }

    [Fact]
    public void Dockerfile_CopiesOnlyPathsThatExist()
    {
        foreach (Match copy in CopyPattern().Matches(File.ReadAllText(Repo.File("Dockerfile"))))
        {
            var sources = copy.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..^1];
            Assert.All(sources, source => Assert.True(File.Exists(Repo.File(source)) || Directory.Exists(Repo.File(source)), $"COPY {source}: not in the repository"));
        }
    }

    [GeneratedRegex(@"^FROM \S+ AS (\S+)$", RegexOptions.Multiline)]
    private static partial Regex StagePattern();

    [GeneratedRegex(@"^COPY (?!--from)(.+)$", RegexOptions.Multiline)]
    private static partial Regex CopyPattern();
}
