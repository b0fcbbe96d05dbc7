using System.Collections.Concurrent;
using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// A warning said at most once an hour by all replicas together: the replica whose statement moves the notice's
/// said_at forward says it (token_refresh_notices). Before `tokenrefresh migrate` (or the grants) has given this role
/// the table, each process keeps its own hour instead: said a little more often, never lost.
/// </summary>
internal static class HourlyNotice
{
    public static readonly TimeSpan Every = TimeSpan.FromHours(1);

    private static readonly ConcurrentDictionary<string, DateTimeOffset> SaidHere = new();

    private const string ClaimSql = """
        INSERT INTO token_refresh_notices AS n (notice, said_at) VALUES (@Notice, @Now)
        ON CONFLICT (notice) DO UPDATE SET said_at = EXCLUDED.said_at WHERE n.said_at <= @Now - make_interval(secs => @Seconds)
        RETURNING true
        """;

    /// <summary>Whether this replica is the one to say <paramref name="notice"/> now.</summary>
    public static async Task<bool> ClaimAsync(NpgsqlConnection connection, string notice, DateTimeOffset now, CancellationToken cancellationToken)
    {
        try
        {
            return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
                ClaimSql, new { Notice = notice, Now = now, Seconds = Every.TotalSeconds }, cancellationToken: cancellationToken));
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.InsufficientPrivilege)
        {
            var last = SaidHere.GetOrAdd(notice, DateTimeOffset.MinValue);
            return last <= now - Every && SaidHere.TryUpdate(notice, now, last);
        }
    }
}
