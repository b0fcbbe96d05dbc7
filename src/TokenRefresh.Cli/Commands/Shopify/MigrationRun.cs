using System.Globalization;
using System.Runtime.CompilerServices;
using Npgsql;
using TokenRefresh.Platforms.Shopify;

namespace TokenRefresh.Cli.Commands.Shopify;

/// <summary>
/// One `migrate-expiring --yes` run: the stores exchanged side by side (at most <paramref name="concurrency"/> at once), a
/// progress line every few seconds, the stores left with what to do about each, and one summary. Ctrl+C stops starting
/// stores; those in flight finish. A store whose answer was lost, or that was not exchanged for a passing reason, is tried
/// once more at the end (Shopify answers a repeated exchange within 7 days with the same pair).
/// </summary>
internal sealed class MigrationRun(
    ShopifyTokenExchange exchange, int concurrency, TimeProvider time, TextWriter stdout, TextWriter stderr, bool eachStore)
{
    public static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(5);

    private readonly long[] _counts = new long[Enum.GetValues<ExchangeOutcome>().Length];
    private readonly Lock _lock = new();

    // The first pass's stores to try once more, with their first result (said only if they are not tried again).
    private List<(ExchangeCandidate Store, ExchangeResult First)> _again = [];
    private long _started;
    private string? _credentialsRefused;

    public async Task<int> RunAsync(IAsyncEnumerable<ExchangeCandidate> stores, long total, long alreadyExpiring, CancellationToken stopping)
    {
        var started = time.GetTimestamp();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        using var done = new CancellationTokenSource();
        var progress = ProgressAsync(total, alreadyExpiring, started, done.Token);
        try
        {
            await PassAsync(Until(stores, stop.Token), null, stop);
            if (!stop.IsCancellationRequested && _again.Count > 0)
            {
                var again = _again;
                _again = [];
                Write($"trying {again.Count} store(s) once more: lost answers are repeated (Shopify answers a repeat within 7 days with the same pair)");
                var first = again.ToDictionary(a => a.Store.Id, a => a.First.Outcome);
                await PassAsync(Until(again.Select(a => a.Store), stop.Token), first, stop);
            }
        }
        finally
        {
            await done.CancelAsync();
            await progress;
        }

        foreach (var (store, first) in _again)
        {
            Write(Line(store, first)); // stopped before its second try
        }

        return Summary(total, alreadyExpiring, time.GetElapsedTime(started), stopping.IsCancellationRequested);
    }

    /// <param name="first">On the second pass, each store's first outcome (which its second replaces); null on the first.</param>
    private Task PassAsync(IAsyncEnumerable<ExchangeCandidate> stores, Dictionary<string, ExchangeOutcome>? first, CancellationTokenSource stop) =>
        Parallel.ForEachAsync(stores, new ParallelOptions { MaxDegreeOfParallelism = concurrency }, async (store, _) =>
        {
            ExchangeResult result;
            try
            {
                result = await exchange.MigrateAsync(store, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return; // not started: nothing was sent
            }
            catch (NpgsqlException e)
            {
                result = new(ExchangeOutcome.TryAgain, $"the database could not be used ({e.GetType().Name})");
            }

            Record(store, result, first?[store.Id], stop);
        });

    private void Record(ExchangeCandidate store, ExchangeResult result, ExchangeOutcome? first, CancellationTokenSource stop)
    {
        var tryAgain = first is null && result.Outcome is ExchangeOutcome.Unanswered or ExchangeOutcome.TryAgain;
        lock (_lock)
        {
            _started += first is null ? 1 : 0;
            _counts[(int)result.Outcome]++;
            if (first is { } replaced)
            {
                _counts[(int)replaced]--;
            }

            if (tryAgain)
            {
                _again.Add((store, result));
                return;
            }
        }

        if (result.Outcome == ExchangeOutcome.CredentialsRefused)
        {
            // The app's credentials, not the store's: nothing more is sent. Said once.
            if (Interlocked.Exchange(ref _credentialsRefused, result.Reason) is null)
            {
                stderr.WriteLine($"Shopify refused the app's credentials ({result.Reason}): check SHOPIFY_API_KEY and SHOPIFY_API_SECRET. No more stores are sent.");
                stop.Cancel();
            }

            return;
        }

        if (eachStore || result.Outcome is not (ExchangeOutcome.Migrated or ExchangeOutcome.AlreadyMigrated))
        {
            Write(Line(store, result));
        }
    }

    /// <summary>What became of the store, and what to do about it, in one line. Never a token.</summary>
    internal static string Line(ExchangeCandidate store, ExchangeResult result) => result.Outcome switch
    {
        ExchangeOutcome.Migrated => $"migrated {store}: it now has an expiring token, which the service refreshes",
        ExchangeOutcome.AlreadyMigrated => $"already migrated {store}: it has an expiring token",
        ExchangeOutcome.Uninstalled => $"uninstalled {store}: Shopify refused the exchange ({result.Reason}): the app was uninstalled or the token revoked; the merchant must install the app again (the service deactivates the store at its next validation)",
        ExchangeOutcome.Refused when result.Reason == ShopifyClient.NonExpiringRefused =>
            $"refused {store}: Shopify no longer accepts its non-expiring token, not even for the exchange ({result.Reason}); the merchant must open the app again, so that it is authorised anew with an expiring token",
        ExchangeOutcome.Refused when result.Reason is "shop_unavailable_402" or "shop_locked_423" or "forbidden_403" or "not_found_404" =>
            $"refused {store}: Shopify refused the exchange ({result.Reason}): the shop is unavailable (frozen, unpaid, locked or closed); run the command again once the merchant has restored it",
        ExchangeOutcome.Refused => $"refused {store}: Shopify refused the exchange ({result.Reason}); the merchant must open the app again, so that it is authorised anew",
        ExchangeOutcome.Unanswered => $"unanswered {store}: {result.Reason} (Shopify then answers with the same pair; the store is not deactivated meanwhile)",
        ExchangeOutcome.TryAgain => $"not exchanged {store}: {result.Reason}; run the command again",
        ExchangeOutcome.Busy => $"not exchanged {store}: {result.Reason}; run the command again after that",
        _ => $"skipped {store}: {result.Reason}",
    };

    private int Summary(long total, long alreadyExpiring, TimeSpan elapsed, bool stopped)
    {
        var notStarted = Math.Max(0, total - _started);
        Write(string.Create(CultureInfo.InvariantCulture,
            $"{(stopped ? "Stopped after" : "Done in")} {elapsed.TotalSeconds:0.0} s: {total:N0} store(s) to migrate: {Counts(alreadyExpiring)}{(notStarted > 0 ? $", not started {notStarted:N0}" : "")}."));
        if (notStarted > 0)
        {
            Write(string.Create(CultureInfo.InvariantCulture, $"Run the command again for the {notStarted:N0} store(s) not started; the stores done are not sent again."));
        }

        var left = total - _counts[(int)ExchangeOutcome.Migrated] - _counts[(int)ExchangeOutcome.AlreadyMigrated];
        if (left > notStarted && _credentialsRefused is null)
        {
            Write(string.Create(CultureInfo.InvariantCulture,
                $"{left - notStarted:N0} store(s) left, each named above with what to do: the uninstalled and refused need their merchant; run the command again for the others."));
        }

        return _credentialsRefused is not null ? CliApp.CannotRun : left > 0 ? CliApp.AccountsFailed : CliApp.Success;
    }

    private string Counts(long alreadyExpiring)
    {
        long Count(ExchangeOutcome o) => Volatile.Read(ref _counts[(int)o]);
        var text = string.Create(CultureInfo.InvariantCulture,
            $"migrated {Count(ExchangeOutcome.Migrated):N0}, already migrated {Count(ExchangeOutcome.AlreadyMigrated) + alreadyExpiring:N0}, uninstalled {Count(ExchangeOutcome.Uninstalled):N0}, refused {Count(ExchangeOutcome.Refused):N0}, unanswered {Count(ExchangeOutcome.Unanswered):N0}");
        foreach (var (outcome, name) in new[] { (ExchangeOutcome.TryAgain, "to try again"), (ExchangeOutcome.Busy, "in another process"), (ExchangeOutcome.Skipped, "skipped") })
        {
            text += Count(outcome) > 0 ? string.Create(CultureInfo.InvariantCulture, $", {name} {Count(outcome):N0}") : "";
        }

        return text;
    }

    private async Task ProgressAsync(long total, long alreadyExpiring, long started, CancellationToken done)
    {
        using var timer = new PeriodicTimer(ProgressEvery, time);
        try
        {
            while (await timer.WaitForNextTickAsync(done))
            {
                Write(string.Create(CultureInfo.InvariantCulture,
                    $"{Volatile.Read(ref _started):N0} of {total:N0} stores done in {time.GetElapsedTime(started).TotalSeconds:0} s: {Counts(alreadyExpiring)}"));
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
    }

    private void Write(string line)
    {
        lock (stdout)
        {
            stdout.WriteLine(line);
        }
    }

    // Stops handing out stores once the run is stopped, so that those not started are never claimed.
    private static async IAsyncEnumerable<T> Until<T>(IAsyncEnumerable<T> source, [EnumeratorCancellation] CancellationToken stop)
    {
        await foreach (var item in source)
        {
            if (stop.IsCancellationRequested)
            {
                yield break;
            }

            yield return item;
        }
    }

    private static async IAsyncEnumerable<T> Until<T>(IEnumerable<T> source, [EnumeratorCancellation] CancellationToken stop)
    {
        foreach (var item in source)
        {
            if (stop.IsCancellationRequested)
            {
                yield break;
            }

            await Task.Yield();
            yield return item;
        }
    }
}
