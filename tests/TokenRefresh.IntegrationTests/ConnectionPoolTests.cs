using Dapper;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Testing;
using Npgsql;
using TokenRefresh.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace TokenRefresh.IntegrationTests;

/// <summary>The connections each replica uses: sized to the accounts in flight, or to an operator's pool size, never above it.</summary>
public sealed class ConnectionPoolTests(ITestOutputHelper output) : HarnessTests
{
    [Xunit.Theory]
    [InlineData(null, "16", 20, 16)]
    [InlineData(null, "4", 8, 4)]
    [InlineData("6", "16", 6, 2)]
    [InlineData("40", "16", 40, 16)]
    public void Wiring_PoolSize_IsTheOperatorsOrFitsTheConcurrency(string? maxPoolSize, string concurrency, int expectedPool, int expectedConcurrency)
    {
        H.Settings["DATABASE_URL"] = H.Db.Url + (maxPoolSize is null ? "" : $"?max_pool_size={maxPoolSize}");
        H.Settings["REFRESH_MAX_CONCURRENCY"] = concurrency;
        using var host = H.BuildHost();

        var pool = new NpgsqlConnectionStringBuilder(host.Services.GetRequiredService<NpgsqlDataSource>().ConnectionString).MaxPoolSize;

        Assert.Equal(expectedPool, pool);
        Assert.Equal(expectedConcurrency, host.Services.GetRequiredService<CycleSettings>().MaxConcurrency);
        var warnings = host.Services.GetFakeLogCollector().GetSnapshot().Count(l => l.Message.Contains("accounts are processed at once instead of", StringComparison.Ordinal));
        Assert.Equal(expectedConcurrency < int.Parse(concurrency, System.Globalization.CultureInfo.InvariantCulture) ? 1 : 0, warnings);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(16)]
    public async Task Cycle_PeakConnections_StayWithinTheConcurrencyAndTheListingQueries(int concurrency)
    {
        await Chains.DueUsersAsync(H, 3 * concurrency);
        for (var i = 0; i < 2 * concurrency; i++)
        {
            H.Fake.Shopify.AddStore($"s{i}.myshopify.com", $"shpat_{i}");
            await H.Db.AddShopifyStoreAsync($"s{i}.myshopify.com", $"shpat_{i}");
        }

        H.Fake.Latency = TimeSpan.FromMilliseconds(150);
        H.Settings["REFRESH_MAX_CONCURRENCY"] = $"{concurrency}";
        var peak = 0;
        using var stop = new CancellationTokenSource();
        var sampling = Task.Run(async () =>
        {
            await using var c = await H.Db.OpenAsync();
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, await c.ExecuteScalarAsync<int>(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tokenrefresh'"));
                await Task.Delay(10);
            }
        });

        var (summary, _) = await H.RunCycleAsync();
        await stop.CancelAsync();
        await sampling;

        output.WriteLine($"REFRESH_MAX_CONCURRENCY={concurrency}: peak {peak} connections ({summary})");
        Assert.False(summary.AnyFailed);
        Assert.InRange(peak, 1, concurrency + DatabasePool.ListingConnections);
    }
}
