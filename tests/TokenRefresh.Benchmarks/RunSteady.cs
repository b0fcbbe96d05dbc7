using System.Globalization;
using Dapper;
using Npgsql;

namespace TokenRefresh.Benchmarks;

/// <summary>
/// `tokenrefresh run` in its steady state: the process's CPU per platform call over the cycles after its first (its
/// start and the first cycle's compilation left out), with every Etsy user made due again after each cycle (stores are
/// validated every cycle). The calls are counted at the fakes.
/// </summary>
internal static class RunSteady
{
    public static async Task<string> MeasureAsync(string cliDll, IReadOnlyDictionary<string, string?> settings, string db, string fakeUrl, int cycles, int everySeconds)
    {
        var environment = new Dictionary<string, string?>(settings) { ["REFRESH_SCHEDULE"] = $"*/{everySeconds} * * * * *" };
        using var cli = Child.Start(cliDll, ["run"], environment);
        var timeout = TimeSpan.FromMinutes(10);
        await cli.WaitForCyclesAsync(1, timeout);
        await MakeDueAsync(db);
        await cli.WaitForCyclesAsync(2, timeout); // the first cycle after the start may have begun before the users were due
        var (cpuBefore, callsBefore) = (cli.Cpu(), await CallsAsync(fakeUrl));
        for (var i = 0; i < cycles; i++)
        {
            await MakeDueAsync(db);
            await cli.WaitForCyclesAsync(3 + i, timeout);
        }

        var (cpu, calls) = (cli.Cpu() - cpuBefore, await CallsAsync(fakeUrl) - callsBefore);
        cli.Signal(15);
        var code = await cli.WaitForExitAsync(TimeSpan.FromMinutes(2));
        return string.Create(CultureInfo.InvariantCulture,
            $"`run`, steady state: {cycles} cycles (every {everySeconds} s), {calls:N0} platform calls, {cpu.TotalMilliseconds / calls:0.000} ms of CPU per call (exit {code})");
    }

    private static async Task MakeDueAsync(string db)
    {
        await using var c = new NpgsqlConnection(db);
        await c.ExecuteAsync("UPDATE etsy_users SET token_expires_at = now() AT TIME ZONE 'UTC'");
    }

    private static async Task<long> CallsAsync(string fakeUrl)
    {
        var stats = await ScaleWorld.FakeStatsAsync(fakeUrl);
        return stats["etsy"]!["totalCalls"]!.GetValue<long>() + stats["shopify"]!["totalCalls"]!.GetValue<long>();
    }
}
