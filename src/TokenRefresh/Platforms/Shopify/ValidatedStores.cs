using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// A cycle's successful validations, recorded a batch at a time (and the rest when the cycle ends): one statement for
/// many stores. A batch that cannot be saved is said once; its stores are validated again once the claim on them runs out.
/// </summary>
internal sealed partial class ValidatedStores(NpgsqlDataSource db, string saveSql, long intervalSeconds, ILogger logger)
{
    /// <summary>How many successful validations are recorded in one statement.</summary>
    private const int Batch = 32;

    private readonly Lock _lock = new();
    private List<(string Id, DateTimeOffset At)> _waiting = [];

    public async Task AddAsync(string id, DateTimeOffset at)
    {
        lock (_lock)
        {
            _waiting.Add((id, at));
        }

        await SaveAsync(force: false);
    }

    /// <summary>Records the validations waiting, once there is a batch of them (or all, with <paramref name="force"/>).</summary>
    public async Task SaveAsync(bool force)
    {
        List<(string Id, DateTimeOffset At)> batch;
        lock (_lock)
        {
            if (_waiting.Count == 0 || (!force && _waiting.Count < Batch))
            {
                return;
            }

            (batch, _waiting) = (_waiting, []);
        }

        try
        {
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            await connection.ExecuteAsync(new CommandDefinition(saveSql, new { Ids = batch.Select(v => v.Id).ToArray(), Ats = batch.Select(v => v.At).ToArray(), IntervalSeconds = intervalSeconds }));
        }
        catch (NpgsqlException e)
        {
            Log.ValidatedNotSaved(logger, e, batch.Count);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(304, LogLevel.Error, "Shopify: the validation state of {Count} stores could not be saved; they are validated again once this cycle's claim on them runs out")]
        public static partial void ValidatedNotSaved(ILogger logger, Exception exception, int count);
    }
}
