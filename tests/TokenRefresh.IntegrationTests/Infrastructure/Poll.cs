namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// Waits for what no signal announces (a fake's counter, a server's port, a row lock inside PostgreSQL): the condition is
/// checked every <c>everyMs</c> until it holds, and the wait fails (cancelled) once <c>within</c> has passed.
/// </summary>
public static class Poll
{
    public static Task UntilAsync(Func<bool> condition, TimeSpan within, int everyMs = 10) =>
        UntilAsync(() => Task.FromResult(condition()), within, everyMs);

    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan within, int everyMs = 10)
    {
        using var timeout = new CancellationTokenSource(within);
        while (!await condition())
        {
            await Task.Delay(everyMs, timeout.Token);
        }
    }
}
