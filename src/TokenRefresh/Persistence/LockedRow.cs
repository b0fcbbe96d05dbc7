using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// A row claimed with <c>FOR UPDATE SKIP LOCKED</c> inside its own transaction. The lock lasts until
/// <see cref="CommitAsync"/>; disposing without committing rolls back and leaves the row as it was.
/// </summary>
internal sealed class LockedRow<T> : IAsyncDisposable
{
    private LockedRow(NpgsqlConnection connection, NpgsqlTransaction transaction, T row)
    {
        Connection = connection;
        Transaction = transaction;
        Row = row;
    }

    public T Row { get; }

    public NpgsqlConnection Connection { get; }

    public NpgsqlTransaction Transaction { get; }

    /// <summary>Runs <paramref name="lockSql"/> (a SELECT ... FOR UPDATE SKIP LOCKED) and keeps its row locked, or returns null.</summary>
    public static async Task<LockedRow<T>?> ClaimAsync(NpgsqlDataSource db, string lockSql, object parameters, CancellationToken cancellationToken)
    {
        var connection = await db.OpenConnectionAsync(cancellationToken);
        try
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var row = await connection.QuerySingleOrDefaultAsync<T>(
                new CommandDefinition(lockSql, parameters, transaction, cancellationToken: cancellationToken));
            if (row is not null)
            {
                return new LockedRow<T>(connection, transaction, row);
            }

            await transaction.DisposeAsync();
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        await connection.DisposeAsync();
        return null;
    }

    public Task CommitAsync(CancellationToken cancellationToken) => Transaction.CommitAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Transaction.DisposeAsync();
        }
        catch (NpgsqlException)
        {
            // The connection is already broken: the server rolled back and released the lock itself.
        }

        await Connection.DisposeAsync();
    }
}

/// <summary>A claimed account's token and its state columns (<see cref="AccountState.Columns"/>).</summary>
internal sealed class ClaimedToken
{
    public string Token { get; init; } = "";
    public int ConsecutiveFailures { get; init; }
    public string? LastError { get; init; }
    public DateTimeOffset? LastErrorAt { get; init; }
    public DateTimeOffset? NextAttemptAt { get; init; }
    public bool NeedsReauth { get; init; }
    public string? TokenHash { get; init; }
    public DateTimeOffset? UnknownOutcomeAt { get; init; }
    public DateTimeOffset? LastSuccessAt { get; init; }

    public AccountState State => new(
        ConsecutiveFailures, LastError, LastErrorAt, NextAttemptAt, NeedsReauth, TokenHash, UnknownOutcomeAt, LastSuccessAt);

    // Never print the token.
    public override string ToString() => nameof(ClaimedToken);
}
