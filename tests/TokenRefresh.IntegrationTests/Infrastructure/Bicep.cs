using System.Diagnostics;
using System.Reflection;
using System.Text.Json;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>The Bicep compiler the tests restore (Azure.Bicep.CommandLine): a template compiled with no error nor warning.</summary>
internal static class Bicep
{
    /// <summary>`bicep build` (or `build-params` for a .bicepparam) to standard output, with <paramref name="environment"/> set: the ARM JSON.</summary>
    public static JsonElement Build(string file, IReadOnlyDictionary<string, string>? environment = null)
    {
        var compiler = typeof(Bicep).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "BicepPath").Value!;
        var command = file.EndsWith(".bicepparam", StringComparison.Ordinal) ? "build-params" : "build";
        var info = new ProcessStartInfo(compiler.Replace('\\', '/'), [command, file, "--stdout"]);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        var (code, stdout, stderr) = ProcessOutput.Run(info);
        Assert.True(code == 0, stderr);
        // Warnings are failures too: the linter's, and the compiler's.
        Assert.Equal("", stderr.Trim());
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    /// <summary>Every resource of a compiled template, those of its modules (nested deployments) included.</summary>
    public static IEnumerable<JsonElement> Resources(JsonElement template)
    {
        if (template.ValueKind != JsonValueKind.Object || !template.TryGetProperty("resources", out var resources))
        {
            yield break;
        }

        var all = resources.ValueKind == JsonValueKind.Object ? resources.EnumerateObject().Select(r => r.Value) : resources.EnumerateArray();
        foreach (var resource in all.Where(r => r.ValueKind == JsonValueKind.Object))
        {
            yield return resource;
            if (resource.TryGetProperty("properties", out var p) && p.ValueKind == JsonValueKind.Object && p.TryGetProperty("template", out var nested))
            {
                foreach (var inner in Resources(nested))
                {
                    yield return inner;
                }
            }
        }
    }
}
