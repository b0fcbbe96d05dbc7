using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh migrate`: creates or upgrades the service's own tables (idempotent).</summary>
internal static class MigrateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var migrate = new Command("migrate", "Create or upgrade the service's own tables (idempotent)");
        migrate.SetAction((_, _) => CliHost.RunAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) => RunAsync(services, stdout, stop)));
        return migrate;
    }

    private static async Task<int> RunAsync(IServiceProvider services, TextWriter stdout, CancellationToken cancellationToken)
    {
        try
        {
            var applied = await Migrator.ApplyAsync(services.GetRequiredService<NpgsqlDataSource>(), cancellationToken);
            stdout.WriteLine(applied.Count == 0 ? "The service's table is up to date; nothing to apply." : $"Applied: {string.Join(", ", applied)}");
            return CliApp.Success;
        }
        catch (NpgsqlException e)
        {
            return CommandLog.DatabaseFailed(services, e, "migrate");
        }
    }
}
