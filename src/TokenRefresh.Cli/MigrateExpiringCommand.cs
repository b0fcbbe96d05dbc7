using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Shopify;

namespace TokenRefresh.Cli;

/// <summary>`tokenrefresh shopify migrate-expiring (--shop DOMAIN | --all) [--dry-run | --yes]`.</summary>
internal static class MigrateExpiringCommand
{
    public static async Task<int> RunAsync(IServiceProvider services, (string? Shop, bool DryRun, bool Yes) o, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        var exchange = services.GetRequiredService<ShopifyTokenExchange>();
        IReadOnlyList<ExchangeCandidate> stores;
        try
        {
            stores = await exchange.CandidatesAsync(o.Shop, cancellationToken);
            if (stores.Count == 0)
            {
                if (o.Shop is not null && !await exchange.AlreadyExpiringAsync(o.Shop, cancellationToken))
                {
                    stderr.WriteLine($"No active store with shop_domain {o.Shop}.");
                    return CliApp.CannotRun;
                }

                stdout.WriteLine(o.Shop is null
                    ? "Every active store already has an expiring token; nothing to migrate."
                    : $"{o.Shop} already has an expiring token; nothing to migrate.");
                return CliApp.Success;
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

        if (!o.Yes)
        {
            foreach (var store in stores)
            {
                stdout.WriteLine($"would migrate {store}: exchange its non-expiring offline token for an expiring pair{(store.Pending ? " (an earlier exchange went unanswered: this completes it)" : "")}");
            }

            if (o.DryRun)
            {
                stdout.WriteLine($"{stores.Count} store(s) would be migrated. Nothing was changed (--dry-run).");
                return CliApp.Success;
            }

            stderr.WriteLine($"This is irreversible: Shopify revokes each store's non-expiring token. Run again with --yes to migrate {stores.Count} store(s), or with --dry-run to only list them.");
            return CliApp.CannotRun;
        }

        var failed = 0;
        var done = 0;
        foreach (var store in stores)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                stdout.WriteLine($"stopped: {stores.Count - done} store(s) not started; run the command again for them.");
                break;
            }

            done++;
            AccountResult result;
            try
            {
                result = await exchange.MigrateAsync(store, cancellationToken);
            }
            catch (Exception e) when (e is NpgsqlException or OperationCanceledException)
            {
                result = AccountResult.TransientFailure($"the database could not be used ({e.GetType().Name}); run the migration again");
            }

            failed += result.Outcome == Outcome.Failed ? 1 : 0;
            stdout.WriteLine(result.Outcome switch
            {
                Outcome.Refreshed => $"migrated {store}: it now has an expiring token, which the service refreshes",
                Outcome.Skipped => $"skipped {store}: {result.Reason}",
                _ => $"failed {store}: {result.Reason}",
            });
        }

        stdout.WriteLine($"{done - failed}/{stores.Count} store(s) migrated or skipped, {failed} failed.");
        return failed == 0 && done == stores.Count ? CliApp.Success : CliApp.AccountsFailed;
    }
}
