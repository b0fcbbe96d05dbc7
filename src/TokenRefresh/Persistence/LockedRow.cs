using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// A row claimed with <c>FOR UPDATE SKIP LOCKED</c> inside its own transaction. The lock lasts until
/// <see cref="CommitAsync"/>; disposing without committing rolls back and leaves the row as it was.
/// </summary>
internal sealed class LockedRow<T> : IAsyncDisposable
{
    private readonly NpgsqlConnection _connection;
    private readonly NpgsqlTransaction _transaction;

    private LockedRow(NpgsqlConnection connection, NpgsqlTransaction transaction, T row)
    {
        _connection = connection;
        _transaction = transaction;
        Row = row;
    }

    public T Row { get; }

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

    /// <summary>Runs one statement in the row's transaction and returns the rows it changed.</summary>
    public Task<int> ExecuteAsync(string sql, object parameters, CancellationToken cancellationToken) =>
        _connection.ExecuteAsync(new CommandDefinition(sql, parameters, _transaction, cancellationToken: cancellationToken));

    public Task CommitAsync(CancellationToken cancellationToken) => _transaction.CommitAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _transaction.DisposeAsync();
        await _connection.DisposeAsync();
    }
}
