using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Cli.Commands;

/// <summary>
/// `once` and `run` on a database the service's table is missing from (or behind on): a role that owns the tables
/// creates or upgrades it, as `migrate` would, so the original's `docker run --env-file .env IMAGE` works on a fresh
/// database; a least-privilege role is told, in one line, what to run as the owner.
/// </summary>
internal static partial class MigrateAtStart
{
    /// <summary>True once decided (up to date, migrated, or not this role's to do); false when the database could not be asked.</summary>
    public static async Task<bool> TryAsync(IServiceProvider services, ILogger logger, CancellationToken cancellationToken)
    {
        if (services.GetService<NpgsqlDataSource>() is not { } db)
        {
            return true; // no database in this wiring: nothing to check
        }

        try
        {
            var (pending, ownsTables) = await Migrator.StateAsync(db, cancellationToken);
            if (pending.Count == 0)
            {
                return true;
            }

            if (!ownsTables)
            {
                Log.NotOwner(logger, string.Join(", ", pending));
                return true;
            }

            Log.Migrated(logger, string.Join(", ", await Migrator.ApplyAsync(db, cancellationToken)));
            return true;
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            // Not allowed to read the migrations: not this role's to do (the cycle names what it lacks).
            Log.NotOwner(logger, e.MessageText);
            return true;
        }
        catch (Exception e) when (DatabaseRetry.IsTransient(e) || (e is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            // The cycle reports the database; `run` asks again before its next cycle.
            return false;
        }
        catch (PostgresException e)
        {
            // Any other refusal: said once, and the cycle goes on to fail or succeed on its own (`run` keeps its loop).
            Log.NotMigrated(logger, e.SqlState, e.MessageText);
            return true;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(210, LogLevel.Information, "Created or upgraded the service's own tables at start (this role owns the tables): {Applied}")]
        public static partial void Migrated(ILogger logger, string applied);

        [LoggerMessage(211, LogLevel.Warning, "The service's own tables are missing or behind ({Pending}), and this role does not own the tables: run `tokenrefresh migrate` as their owner (docs/database.md)")]
        public static partial void NotOwner(ILogger logger, string pending);

        [LoggerMessage(212, LogLevel.Warning, "Could not check or create the service's own tables at start ({SqlState}: {Reason}); the cycle goes on without")]
        public static partial void NotMigrated(ILogger logger, string sqlState, string reason);
    }
}
