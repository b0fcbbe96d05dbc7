using Dapper;

namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>
/// Samples the service's sessions on a test database (pg_stat_activity, every 20 ms) while it runs, and keeps the
/// longest time one of them was seen idle inside a transaction: a transaction held open across a platform call or a
/// wait shows here, and its row locks with it.
/// </summary>
public sealed class IdleTransactionWatch : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampling;
    private double _longestSeconds;
    private int _samples;

    public IdleTransactionWatch(TestDatabase db) => _sampling = SampleAsync(db);

    /// <summary>The longest that any session of the service was seen idle in a transaction.</summary>
    public TimeSpan Longest => TimeSpan.FromSeconds(Volatile.Read(ref _longestSeconds));

    /// <summary>How many samples were taken (the watch did watch).</summary>
    public int Samples => Volatile.Read(ref _samples);

    private async Task SampleAsync(TestDatabase db)
    {
        await using var connection = await db.OpenAsync();
        while (!_stop.IsCancellationRequested)
        {
            var seconds = await connection.ExecuteScalarAsync<double>("""
                SELECT COALESCE(max(extract(epoch FROM clock_timestamp() - state_change)), 0)::float8
                FROM pg_stat_activity
                WHERE datname = current_database() AND usename = @Role AND state LIKE 'idle in transaction%'
                """, new { Role = TestDatabase.ServiceRole });
            Interlocked.Increment(ref _samples);
            if (seconds > Volatile.Read(ref _longestSeconds))
            {
                Volatile.Write(ref _longestSeconds, seconds);
            }

            try
            {
                await Task.Delay(20, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _sampling;
        _stop.Dispose();
    }
}
