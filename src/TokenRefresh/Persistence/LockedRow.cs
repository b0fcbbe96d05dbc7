using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// A row claimed with <c>FOR UPDATE SKIP LOCKED</c> inside its own transaction. The lock lasts until the
/// transaction ends; disposing without committing rolls back and leaves the row as it was.
/// BEGIN travels with the claim and COMMIT with the write, so a refresh costs two database round trips.
/// </summary>
internal sealed class LockedRow<T> : IAsyncDisposable
{
    private bool _ended;

    private LockedRow(NpgsqlConnection connection, T row)
    {
        Connection = connection;
        Row = row;
    }

    public T Row { get; }

    public NpgsqlConnection Connection { get; }

    /// <summary>Runs <paramref name="lockSql"/> (a SELECT ... FOR UPDATE SKIP LOCKED) in a new transaction and keeps its row locked, or returns null.</summary>
    public static Task<LockedRow<T>?> ClaimAsync(NpgsqlDataSource db, string lockSql, object parameters, CancellationToken cancellationToken) =>
        ClaimCoreAsync(db, lockSql, parameters, results => results.ReadSingleOrDefaultAsync<T>(), cancellationToken);

    /// <summary>
    /// Claims an account's token: <paramref name="lockSql"/> (a SELECT of Id and Token ... FOR UPDATE SKIP LOCKED)
    /// and then its state from token_refresh_state, read by a second statement of the same round trip, so after
    /// the lock: a failure that another process committed a moment ago is seen (the join in the first
    /// statement would see the snapshot taken before the lock was granted).
    /// </summary>
    public static Task<LockedRow<ClaimedToken>?> ClaimTokenAsync(
        NpgsqlDataSource db, string lockSql, string stateKey, object parameters, CancellationToken cancellationToken)
    {
        var sql = $"""
            {lockSql};
            SELECT {AccountState.Columns} FROM token_refresh_state s WHERE s.platform = '{stateKey}' AND s.account_id = @Id;
            """;
        return LockedRow<ClaimedToken>.ClaimCoreAsync(db, sql, parameters, async results =>
        {
            var row = await results.ReadSingleOrDefaultAsync<ClaimedToken>();
            var state = await results.ReadSingleOrDefaultAsync<ClaimedToken>();
            return row is null ? null : state is null ? row : state.WithToken(row);
        }, cancellationToken);
    }

    private static async Task<LockedRow<T>?> ClaimCoreAsync(
        NpgsqlDataSource db, string sql, object parameters, Func<SqlMapper.GridReader, Task<T?>> read, CancellationToken cancellationToken)
    {
        var connection = await db.OpenConnectionAsync(cancellationToken);
        try
        {
            T? row;
            await using (var results = await connection.QueryMultipleAsync(new CommandDefinition("BEGIN;\n" + sql, parameters, cancellationToken: cancellationToken)))
            {
                row = await read(results);
            }

            if (row is not null)
            {
                return new LockedRow<T>(connection, row);
            }

            await connection.ExecuteAsync("ROLLBACK");
        }
        catch
        {
            // Closing a connection rolls back what it had begun (the pool resets it), or the server already has.
            await connection.DisposeAsync();
            throw;
        }

        await connection.DisposeAsync();
        return null;
    }

    /// <summary>Runs <paramref name="sql"/> and commits in the same round trip; returns the first column of its first row, if any.</summary>
    public async Task<TResult?> ExecuteAndCommitAsync<TResult>(string sql, object parameters, CancellationToken cancellationToken)
    {
        var result = await Connection.ExecuteScalarAsync<TResult?>(new CommandDefinition(sql + ";\nCOMMIT", parameters, cancellationToken: cancellationToken));
        _ended = true;
        return result;
    }

    /// <summary>
    /// Like <see cref="ExecuteAndCommitAsync{TResult}"/>, behind a savepoint: if the statement fails but the connection
    /// lives (a statement timeout, a lock conflict), <see cref="RollBackToSavepointAsync"/> undoes it and keeps the row lock.
    /// </summary>
    public Task<TResult?> ExecuteBehindSavepointAndCommitAsync<TResult>(string sql, object parameters, CancellationToken cancellationToken) =>
        ExecuteAndCommitAsync<TResult>("SAVEPOINT before_write;\n" + sql, parameters, cancellationToken);

    public Task RollBackToSavepointAsync(CancellationToken cancellationToken) =>
        Connection.ExecuteAsync(new CommandDefinition("ROLLBACK TO SAVEPOINT before_write", cancellationToken: cancellationToken));

    /// <summary>The connection still works (a failed statement did not break it), so the transaction and its lock live.</summary>
    public bool IsAlive => !_ended && Connection.FullState == System.Data.ConnectionState.Open;

    public async ValueTask DisposeAsync()
    {
        if (!_ended)
        {
            _ended = true;
            try
            {
                await Connection.ExecuteAsync("ROLLBACK");
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
            {
                // The connection is already broken: the server rolled back and released the lock itself.
            }
        }

        await Connection.DisposeAsync();
    }
}

/// <summary>A claimed account's token and its state columns (<see cref="AccountState.Columns"/>).</summary>
internal sealed class ClaimedToken
{
    public string Id { get; init; } = "";
    public string? ShopDomain { get; init; }
    public string Token { get; init; } = "";
    public int ConsecutiveFailures { get; init; }
    public string? LastError { get; init; }
    public DateTimeOffset? LastErrorAt { get; init; }
    public DateTimeOffset? NextAttemptAt { get; init; }
    public bool NeedsReauth { get; init; }
    public string? TokenHash { get; init; }
    public DateTimeOffset? UnknownOutcomeAt { get; init; }
    public DateTimeOffset? LastSuccessAt { get; init; }

    /// <summary>This state row with the claimed row's id, label and token.</summary>
    public ClaimedToken WithToken(ClaimedToken row) => new()
    {
        Id = row.Id, ShopDomain = row.ShopDomain, Token = row.Token, ConsecutiveFailures = ConsecutiveFailures, LastError = LastError,
        LastErrorAt = LastErrorAt, NextAttemptAt = NextAttemptAt, NeedsReauth = NeedsReauth, TokenHash = TokenHash,
        UnknownOutcomeAt = UnknownOutcomeAt, LastSuccessAt = LastSuccessAt,
    };

    public AccountState State => new(
        ConsecutiveFailures, LastError, LastErrorAt, NextAttemptAt, NeedsReauth, TokenHash, UnknownOutcomeAt, LastSuccessAt);

    // Never print the token.
    public override string ToString() => nameof(ClaimedToken);
}
