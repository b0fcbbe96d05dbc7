using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Settings;

namespace TokenRefresh.Persistence;

/// <summary>
/// The connection pool: an operator's size (max_pool_size in DATABASE_URL, or Maximum Pool Size) is kept as it is, and
/// the accounts in flight are bounded to fit in it; otherwise one connection per account in flight, plus the platforms'
/// listing queries. No statement is prepared unless asked for (max_auto_prepare): PgBouncer before 1.21 in transaction
/// mode, and other poolers, cannot carry prepared statements from one transaction to the next.
/// </summary>
internal sealed partial class DatabasePool
{
    /// <summary>Connections besides those of the accounts in flight: the platforms' listing queries, side by side.</summary>
    public const int ListingConnections = 4;

    private readonly NpgsqlConnectionStringBuilder _connection;
    private readonly int _requested;

    private DatabasePool(NpgsqlConnectionStringBuilder connection, int concurrency, int requested) =>
        (_connection, Concurrency, _requested) = (connection, concurrency, requested);

    /// <summary>The accounts in flight at once that the pool allows: REFRESH_MAX_CONCURRENCY, or fewer to fit an operator's pool.</summary>
    public int Concurrency { get; }

    public static DatabasePool Size(DatabaseSettings database, CycleSettings cycle)
    {
        var connection = new NpgsqlConnectionStringBuilder(database.ConnectionString);
        if (!DatabaseUrl.SetsMaxPoolSize(database.ConnectionString))
        {
            connection.MaxPoolSize = cycle.MaxConcurrency + ListingConnections;
            return new(connection, cycle.MaxConcurrency, cycle.MaxConcurrency);
        }

        return new(connection, connection.MaxPoolSize < cycle.MaxConcurrency + ListingConnections
            ? Math.Max(1, connection.MaxPoolSize - ListingConnections)
            : cycle.MaxConcurrency, cycle.MaxConcurrency);
    }

    /// <summary>The one data source; what it says about the pool and the server's certificate is said once, when the first connection is wanted.</summary>
    public NpgsqlDataSource Build(IServiceProvider services, DatabaseSettings database)
    {
        var logger = services.GetRequiredService<ILoggerFactory>().CreateLogger("TokenRefresh.Database");
        if (Concurrency < _requested)
        {
            Log.PoolBoundsConcurrency(logger, _connection.MaxPoolSize, Concurrency, _requested);
        }

        if (_connection.SslMode is not (SslMode.VerifyCA or SslMode.VerifyFull) && !DatabaseUrl.IsLoopback(_connection.Host))
        {
            Log.ServerNotVerified(logger, _connection.SslMode.ToString().ToLowerInvariant());
        }

        var dataSource = new NpgsqlDataSourceBuilder(_connection.ConnectionString);
        if (database.EntraAuthentication)
        {
            var password = services.GetRequiredService<EntraPassword>();
            dataSource.UsePasswordProvider(_ => password.GetAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult(), (_, ct) => password.GetAsync(ct));
        }

        return dataSource.Build();
    }

    private static partial class Log
    {
        [LoggerMessage(601, LogLevel.Warning, "The database's pool holds {PoolSize} connections (max_pool_size): at most {Concurrency} accounts are processed at once instead of REFRESH_MAX_CONCURRENCY={Requested}")]
        public static partial void PoolBoundsConcurrency(ILogger logger, int poolSize, int concurrency, int requested);

        [LoggerMessage(602, LogLevel.Warning, "The database server's certificate is not verified (sslmode={SslMode}), so a man in the middle could read the tokens: set sslmode=verify-full and sslrootcert to the provider's CA certificate in DATABASE_URL")]
        public static partial void ServerNotVerified(ILogger logger, string sslMode);
    }
}
