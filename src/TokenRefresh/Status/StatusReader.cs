using Dapper;
using Npgsql;
using TokenRefresh.OAuth;
using TokenRefresh.Persistence;

namespace TokenRefresh.Status;

/// <summary>Reads what <c>tokenrefresh status</c> shows for every registered platform, straight from the main tables and the service's state.</summary>
internal sealed class StatusReader(NpgsqlDataSource db, IEnumerable<IPlatform> platforms, TimeProvider time)
{
    /// <summary>"Fine lately" means a success within this window: an access token lives an hour.</summary>
    public static readonly TimeSpan RecentWindow = TimeSpan.FromHours(1);

    /// <exception cref="SchemaException">A table that a required platform needs lacks it.</exception>
    public async Task<IReadOnlyList<PlatformStatus>> ReadAsync(CancellationToken cancellationToken)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var result = new List<PlatformStatus>();
        foreach (var platform in platforms)
        {
            StatusSource? source;
            try
            {
                source = await platform.StatusSourceAsync(cancellationToken);
            }
            catch (SchemaException e) when (platform.Info.Optional)
            {
                result.Add(PlatformStatus.Absent(platform.Info.Name, e.Message));
                continue;
            }

            if (source is not null)
            {
                result.Add(await ReadAsync(connection, source, cancellationToken));
            }
        }

        return result;
    }

    private async Task<PlatformStatus> ReadAsync(NpgsqlConnection connection, StatusSource source, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var parameters = new
        {
            Now = now, DueBefore = now + source.Margin, RecentSince = now - RecentWindow, WarnBefore = now + source.EndingWithin,
            source.IntervalSeconds,
        };
        var counts = await connection.ReadRowAsync<(long Due, long Recent, long BackingOff, long NeedsReauth, long Ending, long NotCalled, long Paused)>(
            new CommandDefinition(source.Counts, parameters, cancellationToken: cancellationToken));
        // The list is a second pass over every account: made only when the counts say some need attention.
        var accounts = counts.BackingOff + counts.NeedsReauth + counts.Ending + counts.NotCalled == 0 ? []
            : await connection.ReadRowsAsync<AttentionAccount>(new CommandDefinition(source.Accounts, parameters, cancellationToken: cancellationToken));
        var status = new PlatformStatus(
            source.Platform.Name, counts.Due, counts.Recent, counts.BackingOff, counts.NeedsReauth, counts.Ending, counts.NotCalled, counts.Paused, accounts);
        return source.Complete is { } complete ? await complete(connection, status, cancellationToken) : status;
    }
}
