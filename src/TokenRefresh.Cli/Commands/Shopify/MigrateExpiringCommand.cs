using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Platforms.Shopify;
using TokenRefresh.Settings;

namespace TokenRefresh.Cli.Commands.Shopify;

/// <summary>`tokenrefresh shopify migrate-expiring (--shop DOMAIN | --all) [--dry-run | --yes]`.</summary>
internal static class MigrateExpiringCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var shop = new Option<string>("--shop") { Description = "One store's shop_domain", HelpName = "DOMAIN" };
        var all = new Option<bool>("--all") { Description = "Every active store with a non-expiring token" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what would be migrated (the default without --yes)" };
        var yes = new Option<bool>("--yes") { Description = "Migrate: irreversible, the old token stops working" };
        var command = new Command("migrate-expiring", "Exchange stores' non-expiring Shopify tokens for expiring ones (irreversible)") { shop, all, dryRun, yes };
        command.Validators.Add(result =>
        {
            if ((result.GetResult(shop) is null) != result.GetValue(all))
            {
                result.AddError("Give exactly one of --shop DOMAIN or --all.");
            }

            if (result.GetValue(dryRun) && result.GetValue(yes))
            {
                result.AddError("Give at most one of --dry-run or --yes.");
            }
        });
        command.SetAction((parse, _) => CliHost.RunAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
            RunAsync(services, (parse.GetValue(shop), parse.GetValue(dryRun), parse.GetValue(yes)), stdout, stderr, stop)));
        return command;
    }

    public static async Task<int> RunAsync(IServiceProvider services, (string? Shop, bool DryRun, bool Yes) o, TextWriter stdout, TextWriter stderr, CancellationToken stopping)
    {
        var exchange = services.GetRequiredService<ShopifyTokenExchange>();
        long left, expiring;
        try
        {
            (left, expiring) = await exchange.PrepareAsync(stopping);
            if (o.Shop is not null)
            {
                // One store: whether it is left to migrate, from the same query as --all.
                left = 0;
                await foreach (var _ in exchange.CandidatesAsync(o.Shop, stopping))
                {
                    left++;
                }
            }

            if (left == 0)
            {
                if (o.Shop is not null && !await exchange.AlreadyExpiringAsync(o.Shop, stopping))
                {
                    stderr.WriteLine($"No active store with shop_domain {o.Shop}.");
                    return CliApp.CannotRun;
                }

                stdout.WriteLine(o.Shop is null
                    ? "Every active store already has an expiring token; nothing to migrate."
                    : $"{o.Shop} already has an expiring token; nothing to migrate.");
                return CliApp.Success;
            }

            if (!o.Yes)
            {
                return await ListAsync(exchange, o, left, stdout, stderr, stopping);
            }
        }
        catch (SchemaException e)
        {
            stderr.WriteLine(e.Message);
            return CliApp.CannotRun;
        }
        catch (NpgsqlException e)
        {
            stderr.WriteLine($"The database could not be used: {e.Message}");
            return CliApp.CannotRun;
        }

        // Shopify's limits are per store: SHOPIFY_MAX_CONCURRENCY (or REFRESH_MAX_CONCURRENCY) bounds our own side.
        var concurrency = services.GetRequiredService<ShopifySettings>().MaxConcurrency ?? services.GetRequiredService<CycleSettings>().MaxConcurrency;
        var run = new MigrationRun(exchange, concurrency, services.GetRequiredService<TimeProvider>(), stdout, stderr, eachStore: o.Shop is not null);
        return await run.RunAsync(exchange.CandidatesAsync(o.Shop, CancellationToken.None), left, o.Shop is null ? expiring : 0, stopping);
    }

    private static async Task<int> ListAsync(
        ShopifyTokenExchange exchange, (string? Shop, bool DryRun, bool Yes) o, long left, TextWriter stdout, TextWriter stderr, CancellationToken stopping)
    {
        await foreach (var store in exchange.CandidatesAsync(o.Shop, stopping))
        {
            stdout.WriteLine($"would migrate {store}: exchange its non-expiring offline token for an expiring pair{(store.Pending ? " (an earlier exchange went unanswered: this completes it)" : "")}");
        }

        if (o.DryRun)
        {
            stdout.WriteLine($"{left} store(s) would be migrated. Nothing was changed (--dry-run).");
            return CliApp.Success;
        }

        stderr.WriteLine($"This is irreversible: Shopify revokes each store's non-expiring token. Run again with --yes to migrate {left} store(s), or with --dry-run to only list them.");
        return CliApp.CannotRun;
    }
}
