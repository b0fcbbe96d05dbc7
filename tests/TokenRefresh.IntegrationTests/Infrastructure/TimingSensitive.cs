namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// Tests whose assertions are about time (a rate across processes, a platform's time against its bound): they run
/// alone, not beside another test class that takes the machine's two cores.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TimingSensitive
{
    public const string Name = "Timing-sensitive";
}
