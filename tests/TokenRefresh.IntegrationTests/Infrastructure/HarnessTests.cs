namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>A test class whose every test gets its own service harness: a fresh database and fake platforms.</summary>
public abstract class HarnessTests : IAsyncLifetime
{
    protected ServiceHarness H { get; private set; } = null!;

    /// <summary>How the harness starts; override for another database or clock.</summary>
    protected virtual Task<ServiceHarness> StartAsync() => ServiceHarness.StartAsync();

    public async Task InitializeAsync() => H = await StartAsync();

    public async Task DisposeAsync() => await H.DisposeAsync();
}
