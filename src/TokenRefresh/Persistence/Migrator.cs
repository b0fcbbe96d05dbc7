using System.Reflection;
using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>
/// Creates and upgrades the service's own table(s). Idempotent: each embedded script runs once,
/// recorded in token_refresh_migrations, under an advisory lock so two migrators never race.
/// </summary>
public static class Migrator
{
    private const long AdvisoryLockKey = 0x746F6B656E726631; // "tokenrf1"

    public static IReadOnlyList<string> Scripts { get; } = typeof(Migrator).Assembly.GetManifestResourceNames()
        .Where(n => n.Contains(".Migrations.", StringComparison.Ordinal) && n.EndsWith(".sql", StringComparison.Ordinal))
        .Order(StringComparer.Ordinal)
        .ToList();

    /// <summary>Applies the scripts not applied yet; returns their names.</summary>
    public static async Task<IReadOnlyList<string>> ApplyAsync(NpgsqlDataSource db, CancellationToken cancellationToken = default)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            "SELECT pg_advisory_xact_lock(@AdvisoryLockKey)", new { AdvisoryLockKey }, transaction, cancellationToken: cancellationToken));
        await connection.ExecuteAsync(new CommandDefinition(
            """
            CREATE TABLE IF NOT EXISTS token_refresh_migrations (
                id          text PRIMARY KEY,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """, transaction: transaction, cancellationToken: cancellationToken));
        var done = await AppliedAsync(connection, transaction, cancellationToken);

        var applied = new List<string>();
        foreach (var script in Scripts)
        {
            var id = Id(script);
            if (done.Contains(id))
            {
                continue;
            }

            await connection.ExecuteAsync(new CommandDefinition(Read(script), transaction: transaction, cancellationToken: cancellationToken));
            await connection.ExecuteAsync(new CommandDefinition(
                "INSERT INTO token_refresh_migrations (id) VALUES (@id)", new { id }, transaction, cancellationToken: cancellationToken));
            applied.Add(id);
        }

        await transaction.CommitAsync(cancellationToken);
        return applied;
    }

    /// <summary>
    /// The scripts not applied yet (all of them before the first `migrate`), and whether this role owns the main
    /// application's tables (or the service's own), itself or through a role it is a member of: one role for everything,
    /// as the original's users run it. Such a role migrates at start.
    /// </summary>
    public static async Task<(IReadOnlyList<string> Pending, bool OwnsTables)> StateAsync(NpgsqlDataSource db, CancellationToken cancellationToken = default)
    {
        await using var connection = await db.OpenConnectionAsync(cancellationToken);
        var done = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            "SELECT to_regclass('token_refresh_migrations') IS NOT NULL", cancellationToken: cancellationToken))
            ? await AppliedAsync(connection, null, cancellationToken)
            : [];
        var owns = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
            """
            SELECT coalesce(bool_or(pg_has_role(current_user, c.relowner, 'MEMBER')), false)
            FROM unnest(ARRAY['etsy_users', 'shopify_stores', 'token_refresh_state']) AS t(name)
            JOIN pg_catalog.pg_class c ON c.oid = to_regclass(t.name)
            """, cancellationToken: cancellationToken));
        return ([.. Scripts.Select(Id).Where(id => !done.Contains(id))], owns);
    }

    private static async Task<HashSet<string>> AppliedAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken) =>
        (await connection.ReadRowsAsync<string>(new CommandDefinition(
            "SELECT id FROM token_refresh_migrations", transaction: transaction, cancellationToken: cancellationToken))).ToHashSet();

    /// <summary>"TokenRefresh.Persistence.Migrations.001_account_state.sql" → "001_account_state".</summary>
    private static string Id(string resource) => Path.GetFileNameWithoutExtension(resource)["TokenRefresh.Persistence.Migrations.".Length..];

    private static string Read(string resource)
    {
        using var stream = typeof(Migrator).Assembly.GetManifestResourceStream(resource)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
