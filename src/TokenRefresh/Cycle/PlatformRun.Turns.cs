using TokenRefresh.Scheduling;

namespace TokenRefresh;

/// <summary>A due account's turn: a rate-limit permit, then a call slot; the accounts with turns are claimed together.</summary>
internal sealed partial class PlatformRun
{
    /// <summary>An account's turn: its call slot, and its rate-limit permit's moment (a <see cref="TimeProvider"/> timestamp).</summary>
    private sealed record Turn(CallSlots.Slot Slot, long PermittedAt);

    private async Task ClaimBatchAsync()
    {
        if (_batch.Count == 0)
        {
            return;
        }

        var claims = await ClaimAsync([.. _batch.Select(b => b.Account)], _claiming.Token);
        for (var i = 0; i < _batch.Count; i++)
        {
            if (claims[i].Result is { } notClaimed)
            {
                _tally.Add(notClaimed);
                _spare.Push(_batch[i].Turn);
            }
            else
            {
                _running.Add(RunClaimedAsync(claims[i].Account! with { PermittedAt = _batch[i].Turn.PermittedAt }, _batch[i].Turn.Slot));
            }
        }

        _batch.Clear();
    }

    // A turn left by an account that was not claimed, while its permit is good.
    private Turn? Spare()
    {
        while (_spare.TryPop(out var turn))
        {
            if (_cycle.Time.GetElapsedTime(turn.PermittedAt) <= Permit.Grace)
            {
                return turn;
            }

            turn.Slot.Dispose();
        }

        return null;
    }

    // A turn that is there now: a free slot, and a permit with no wait.
    private Turn? TryTurnNow()
    {
        if (!_lane.TryEnter(out var slot))
        {
            return null;
        }

        if (_work.Permits.TryTake() is { } late)
        {
            return new Turn(slot, _cycle.MomentAgo(late));
        }

        slot.Dispose();
        return null;
    }

    // A permit, then a slot, both still good: a permit is for its moment, and one kept while a slot came free would put
    // its call beside the next one's. Null, with the platform stopped, when no permit comes within the budget.
    private async Task<Turn?> WaitForTurnAsync()
    {
        CallSlots.Slot? slot = null;
        try
        {
            while (true)
            {
                var (notNow, late) = await _work.Permits.WaitAsync(_cycle.Deadline, _claiming.Token);
                if (notNow is not null)
                {
                    await StopAsync(notNow);
                    return null;
                }

                var permittedAt = _cycle.MomentAgo(late);
                slot ??= await _lane.EnterAsync(_claiming.Token);
                _claiming.Token.ThrowIfCancellationRequested();
                if (_cycle.Time.GetElapsedTime(permittedAt) <= Permit.Grace)
                {
                    var turn = new Turn(slot, permittedAt);
                    slot = null;
                    return turn;
                }
            }
        }
        finally
        {
            slot?.Dispose();
        }
    }
}
