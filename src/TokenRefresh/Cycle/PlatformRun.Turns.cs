using TokenRefresh.Scheduling;

namespace TokenRefresh;

/// <summary>A call's turn: a rate-limit permit, then a call slot; as many accounts as there are turns are claimed together.</summary>
internal sealed partial class PlatformRun
{
    /// <summary>
    /// An account's turn: its call slot, and its rate-limit permit's moment (a <see cref="TimeProvider"/> timestamp), which
    /// may be a few milliseconds ahead: then <paramref name="Early"/> is how long (real time, as the moments are) its call waits from <paramref name="TakenAt"/>.
    /// </summary>
    private sealed record Turn(CallSlots.Slot Slot, long PermittedAt, TimeSpan Early = default, long TakenAt = 0);

    // The turns there are now, up to <paramref name="most"/>; else one waited for. Null, with the platform stopped, when
    // no permit comes within the budget.
    private async Task<List<Turn>?> TurnsAsync(int most)
    {
        var turns = new List<Turn>();
        while (turns.Count < most && (Spare() ?? TryTurnNow()) is { } turn)
        {
            turns.Add(turn);
        }

        if (turns.Count == 0 && await WaitForTurnAsync() is { } waited)
        {
            turns.Add(waited);
            // The moments reserved with it (a few at high rates) go in the same claim, whose round trip they wait out.
            while (turns.Count < most && TryTurnNow() is { } next)
            {
                turns.Add(next);
            }
        }

        return turns.Count > 0 ? turns : null;
    }

    // Each claimed account's call runs on its own, with a turn; an account with a problem is recorded, and takes none.
    private async Task StartAsync(IReadOnlyList<DueAccount> accounts, List<Turn> turns)
    {
        // The calls done are let go, so that a cycle's memory does not grow with its accounts (a fault is kept for FinishAsync).
        if (_running.Count >= 1024)
        {
            _running.RemoveAll(t => t.IsCompletedSuccessfully);
        }

        var used = 0;
        foreach (var account in accounts)
        {
            if (account.Problem is not null)
            {
                _tally.Add(await ProcessAsync(account));
                continue;
            }

            var turn = turns[used++];
            _running.Add(RunClaimedAsync(account with { PermittedAt = turn.PermittedAt }, turn));
        }

        KeepSpare(turns[used..]);
    }

    // Turns the claim found no account for, kept for the next one while their permits are good.
    private void KeepSpare(IEnumerable<Turn> turns)
    {
        foreach (var turn in turns)
        {
            _spare.Push(turn);
        }
    }

    // A turn left over by a claim, while its permit is good.
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

    // A turn that is there now: a free slot, and a permit with no wait (its moment come, or coming within the grace).
    private Turn? TryTurnNow()
    {
        if (!_lane.TryEnter(out var slot))
        {
            return null;
        }

        if (_work.Permits.TryTake(Permit.Grace) is { } late)
        {
            return new Turn(slot, _cycle.MomentAgo(late), late < TimeSpan.Zero ? -late : default, _work.Permits.Clock.GetTimestamp());
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
                // Only a wait for the rate frees this lane's claim on the slots: a reservation's round trip is short.
                _lane.AwaitingPermit = _work.Permits.RateBound;
                var (notNow, late) = await _work.Permits.WaitAsync(_cycle.Deadline, _claiming.Token);
                _lane.AwaitingPermit = false;
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
