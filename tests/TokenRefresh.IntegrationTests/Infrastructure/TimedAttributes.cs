namespace TokenRefresh.IntegrationTests;

// Every integration test has a time limit: one that hangs (a process that never exits, a fake that never answers)
// fails on its own instead of stalling the whole run. Declared in the tests' namespace, these take the place of
// xunit's own [Fact] and [Theory] there, so no async test can forget its limit. xunit times only async tests: the few
// synchronous ones (parsing files, pure arithmetic) name xunit's attributes, [Xunit.Fact] and [Xunit.Theory].

/// <summary>xunit's [Fact], with a 3-minute limit.</summary>
public sealed class FactAttribute : Xunit.FactAttribute
{
    public FactAttribute() => Timeout = TimedTests.Limit;
}

/// <summary>xunit's [Theory], with a 3-minute limit for each case.</summary>
public sealed class TheoryAttribute : Xunit.TheoryAttribute
{
    public TheoryAttribute() => Timeout = TimedTests.Limit;
}

internal static class TimedTests
{
    /// <summary>Far above the slowest test here (about 50 s), so only a hang reaches it.</summary>
    public const int Limit = 180_000;
}
