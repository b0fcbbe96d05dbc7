using System.Reflection;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Tests;

public sealed class LogEventTests
{
    [Fact]
    public void EveryLogEvent_HasAnIdOfItsOwn()
    {
        var events = new[] { typeof(RefreshCycle).Assembly, typeof(Cli.CliApp).Assembly }
            .SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.FullName}.{m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(e => e.Attribute is not null)
            .ToList();

        Assert.True(events.Count > 40, $"only {events.Count} log events found");
        var shared = events.GroupBy(e => e.Attribute!.EventId).Where(g => g.Count() > 1).Select(g => $"{g.Key}: {string.Join(", ", g.Select(e => e.Method))}").ToList();
        Assert.True(shared.Count == 0, string.Join("; ", shared));
    }
}
