using System.Diagnostics;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// The environment a process of the service starts with in the tests: the test process's own, without any setting
/// the service reads (so nothing of this machine's leaks in), plus the test's settings.
/// </summary>
internal static class ServiceEnvironment
{
    public static bool IsServiceSetting(string name) =>
        TokenRefreshExtensions.Settings.Any(s => s.Name == name) || name.StartsWith("OTEL_", StringComparison.Ordinal)
        || name.StartsWith("APPLICATIONINSIGHTS_", StringComparison.Ordinal) || name.StartsWith("TEST_", StringComparison.Ordinal);

    public static void Apply(ProcessStartInfo info, IReadOnlyDictionary<string, string?> settings)
    {
        foreach (var key in info.Environment.Keys.Where(IsServiceSetting).ToList())
        {
            info.Environment.Remove(key);
        }

        foreach (var (key, value) in settings)
        {
            if (value is null)
            {
                info.Environment.Remove(key);
            }
            else
            {
                info.Environment[key] = value;
            }
        }
    }
}
