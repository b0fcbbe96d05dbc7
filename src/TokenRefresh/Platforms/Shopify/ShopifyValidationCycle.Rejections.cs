using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>The cycle's rejected stores (a 401, confirmed): switched off when the cycle is done, unless they are a wave.</summary>
internal sealed partial class ShopifyValidationCycle
{
    // The stores rejected this cycle, decided when its validations are done: at most the guard's limit.
    private readonly List<(DueAccount Account, ClaimedToken Row, string Hash, string Reason)> _rejected = [];
    private readonly Lock _rejectedLock = new();

    // Decided when the cycle's validations are done: only then is it known whether these are a few stores' own
    // rejections, or a wave (Shopify's incident, a wrong setting) that must switch none of them off.
    private async Task<AccountResult> RejectedAsync(DueAccount account, ClaimedToken row, string hash, string reason)
    {
        guard.Rejected();
        if (guard.Tripped)
        {
            // Already more than a wave's limit: held now, so that a cycle keeps no list of a wave's stores.
            return await DecideAsync(account, row, hash, reason, IncidentGuard.Verdict.Wave);
        }

        lock (_rejectedLock)
        {
            _rejected.Add((account, row, hash, reason));
        }

        return AccountResult.DecidedLater;
    }

    /// <summary>
    /// Decides on the cycle's rejections: deactivated when they are within the guard's limit, the cycle before was no
    /// wave, and Shopify still accepts stores whose check passed; else all stay active, and are validated again.
    /// </summary>
    private async Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> DecideRejectedAsync()
    {
        List<(DueAccount Account, ClaimedToken Row, string Hash, string Reason)> rejected;
        lock (_rejectedLock)
        {
            rejected = [.. _rejected];
            _rejected.Clear();
        }

        // A few rejections may be a wave's first: Shopify is asked about a few stores whose check passed before any is switched off.
        var othersRejected = rejected.Count > 0 && !guard.Tripped && await _controls.RejectedTooAsync([.. rejected.Select(r => r.Account.Id)]);
        var verdict = guard.Decide(othersRejected);
        if (rejected.Count == 0)
        {
            return [];
        }

        if (verdict == IncidentGuard.Verdict.Wave && !othersRejected)
        {
            Log.DeactivationPaused(logger, guard.Limit);
        }
        else if (verdict == IncidentGuard.Verdict.AfterWave)
        {
            Log.DeactivationHeldAfterWave(logger, rejected.Count);
        }

        var results = new List<(DueAccount, AccountResult)>();
        foreach (var (account, row, hash, reason) in rejected)
        {
            results.Add((account, await DecideAsync(account, row, hash, reason, verdict)));
        }

        return results;
    }

    private async Task<AccountResult> DecideAsync(DueAccount account, ClaimedToken row, string hash, string reason, IncidentGuard.Verdict verdict)
    {
        try
        {
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            if (verdict == IncidentGuard.Verdict.Deactivate)
            {
                return await DeactivateAsync(connection, account, row.Token, hash, reason);
            }

            // Too many rejections at once to be the stores' own doing: they stay active, and are tried again next cycle.
            metrics.DeactivationPaused(info.Name);
            var (state, failure) = row.State.Failed(CallStatus.Transient, DeactivationPaused, false, null, hash, time.GetUtcNow(), cycle.UnknownOutcomeWait);
            await SaveAsync(connection, account, state);
            return failure;
        }
        catch (NpgsqlException e)
        {
            // The store stays active and is validated again.
            Log.StateNotSaved(logger, e, account.Label);
            return AccountResult.TransientFailure("database_error");
        }
    }
}
