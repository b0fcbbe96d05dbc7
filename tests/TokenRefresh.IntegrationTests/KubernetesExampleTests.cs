using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using TokenRefresh.IntegrationTests.Infrastructure;
using YamlDotNet.Serialization;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// deploy/kubernetes as kubectl applies it: a Deployment of `run` probed with `tokenrefresh health`, a CronJob of
/// `once`, and the Secret both read. The manifests are parsed, and their command lines run here as the image runs them.
/// </summary>
public sealed class KubernetesExampleTests : HarnessTests
{
    private const int SigTerm = 15;

    private static readonly Dictionary<object, object> Secret = Load("secret.example.yaml");
    private static readonly Dictionary<object, object> Deployment = Load("deployment.yaml");
    private static readonly Dictionary<object, object> CronJob = Load("cronjob.yaml");

    private static Dictionary<object, object> Load(string file) =>
        new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(File.ReadAllText(Repo.File("deploy", "kubernetes", file)));

    /// <summary>The node at a path of keys (strings) and list indexes (ints).</summary>
    private static object At(object node, params object[] path) =>
        path.Aggregate(node, (at, step) => step is int i ? ((List<object>)at)[i] : ((Dictionary<object, object>)at)[step]);

    private static Dictionary<object, object> DeploymentContainer => (Dictionary<object, object>)At(Deployment, "spec", "template", "spec", "containers", 0);

    private static Dictionary<object, object> CronJobContainer =>
        (Dictionary<object, object>)At(CronJob, "spec", "jobTemplate", "spec", "template", "spec", "containers", 0);

    private static List<string> Strings(object node) => ((List<object>)node).Cast<string>().ToList();

    [Fact]
    public void Manifests_BothWorkloadsReadTheSecret_OfKnownSettings_AsTheImagesNonRootUser()
    {
        var settings = TokenRefreshExtensions.Settings;
        var keys = ((Dictionary<object, object>)Secret["stringData"]).Keys.Cast<string>().ToList();

        Assert.Equal(("v1", "Secret"), ((string)Secret["apiVersion"], (string)Secret["kind"]));
        Assert.All(keys, key => Assert.Contains(key, settings.Select(s => s.Name)));
        Assert.All(settings.Where(s => s.Required), s => Assert.Contains(s.Name, keys));
        Assert.Equal(("apps/v1", "Deployment"), ((string)Deployment["apiVersion"], (string)Deployment["kind"]));
        Assert.Equal(("batch/v1", "CronJob"), ((string)CronJob["apiVersion"], (string)CronJob["kind"]));
        foreach (var container in new[] { DeploymentContainer, CronJobContainer })
        {
            Assert.Equal(At(Secret, "metadata", "name"), At(container, "envFrom", 0, "secretRef", "name"));
            Assert.Equal("token-refresh-service:1.0.0", container["image"]);
            Assert.Equal("false", At(container, "securityContext", "allowPrivilegeEscalation"));
            // A read-only root: /tmp (the heartbeat, the runtime's own files) is a volume of the pod.
            Assert.Equal("true", At(container, "securityContext", "readOnlyRootFilesystem"));
            Assert.Equal("/tmp", At(container, "volumeMounts", 0, "mountPath"));
        }

        Assert.Equal(["run"], Strings(DeploymentContainer["args"]));
        Assert.Equal(["once"], Strings(CronJobContainer["args"]));
        Assert.Equal("Forbid", At(CronJob, "spec", "concurrencyPolicy"));
        Assert.Equal("Never", At(CronJob, "spec", "jobTemplate", "spec", "template", "spec", "restartPolicy"));
        // The image's user is numeric (USER $APP_UID), which runAsNonRoot needs to verify it.
        Assert.Equal("true", At(Deployment, "spec", "template", "spec", "securityContext", "runAsNonRoot"));
        // A stop waits for the requests in flight and for their pairs to be stored, as compose's stop_grace_period.
        var defaults = CycleSettings.Read(new SettingsReader(new ConfigurationBuilder().Build()));
        var grace = TimeSpan.FromSeconds(int.Parse((string)At(Deployment, "spec", "template", "spec", "terminationGracePeriodSeconds"), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(grace >= defaults.HttpTimeout + Persistence.DatabaseRetry.MinimumWindow, $"terminationGracePeriodSeconds {grace} is too short");
    }

    [Fact]
    public async Task Deployment_RunWithTheManifestsEnvironment_PassesItsProbes_ThenTheCronJobsOnceRefreshes()
    {
        // The probes run the image's HEALTHCHECK command, the `tokenrefresh` the image links to its CLI.
        var healthcheck = Regex.Match(File.ReadAllText(Repo.File("Dockerfile")), @"^HEALTHCHECK .* CMD (\[.*\])$", RegexOptions.Multiline).Groups[1].Value;
        var startup = Strings(At(DeploymentContainer, "startupProbe", "exec", "command"));
        var liveness = Strings(At(DeploymentContainer, "livenessProbe", "exec", "command"));
        Assert.Equal(System.Text.Json.JsonSerializer.Deserialize<List<string>>(healthcheck), liveness);
        Assert.Equal(liveness, startup);
        Assert.Equal("tokenrefresh", liveness[0]);

        // The container's own environment over the Secret's settings (here the harness's), /tmp being the pod's own volume.
        using var pod = new TempDirectory();
        var environment = new Dictionary<string, string?>(H.Settings);
        foreach (var variable in ((List<object>)DeploymentContainer["env"]).Cast<Dictionary<object, object>>())
        {
            var value = (string)variable["value"];
            environment[(string)variable["name"]] = value.StartsWith("/tmp/", StringComparison.Ordinal) ? Path.Combine(pod.Path, value["/tmp/".Length..]) : value;
        }

        var first = H.Fake.Etsy.AddAccount(81);
        await H.Db.AddEtsyUserAsync(first, DateTimeOffset.UtcNow.AddMinutes(1));
        environment["REFRESH_SCHEDULE"] = "0 0 0 1 1 *"; // the next cycle a long way off
        var beforeAnyCycle = await CliProcess.RunAsync([.. startup[1..]], environment);
        using (var run = CliProcess.Start([.. Strings(DeploymentContainer["args"])], environment))
        {
            await run.WaitForOutputAsync("Next cycle at", TimeSpan.FromSeconds(60));
            var probe = await CliProcess.RunAsync([.. liveness[1..]], environment);
            run.Signal(SigTerm);
            Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromSeconds(30)));

            Assert.Equal(1, beforeAnyCycle.ExitCode);
            Assert.True(probe.ExitCode == 0, probe.Stderr);
            Assert.Contains("last cycle: Etsy: 1/1 refreshed", probe.Stdout, StringComparison.Ordinal);
        }

        var second = H.Fake.Etsy.AddAccount(82);
        var id = await H.Db.AddEtsyUserAsync(second, DateTimeOffset.UtcNow.AddMinutes(1));
        var once = await CliProcess.RunAsync([.. Strings(CronJobContainer["args"])], H.Settings);

        Assert.True(once.ExitCode == 0, once.Stderr);
        var issued = H.Fake.Etsy.IssuedFor(second) ?? throw new InvalidOperationException("the CronJob's `once` did not refresh the due user");
        Assert.Equal(issued.RefreshToken, (await H.Db.GetEtsyUserAsync(id)).RefreshToken);
    }

    private sealed class TempDirectory : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("tokenrefresh-pod-").FullName;

        public void Dispose() => Directory.Delete(Path, recursive: true);
    }
}
