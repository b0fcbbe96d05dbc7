using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

/// <summary>
/// One cycle's due accounts of one platform, claimed a few at a time, soonest expiry first. The candidates are read a
/// page at a time, and each claim takes the soonest of the next candidates that are still due and free: replicas that
/// read the same page take turns down it, rather than each asking for the accounts the other has just taken.
/// </summary>
internal sealed class DueQueue(Batches<DueCandidate> candidates, Func<string[], int, Task<IReadOnlyList<ClaimedToken>>> claim) : IAsyncDisposable
{
    /// <summary>
    /// The most candidates one claim looks at, beyond those it is to take: enough to pass over what the other replicas
    /// took meanwhile, and few enough for PostgreSQL to look each up by its key (from about 64, it scans the tables).
    /// </summary>
    private const int Slack = 8, MostLooked = 32;

    private readonly List<DueCandidate> _window = [];

    /// <summary>Claims up to <paramref name="count"/> accounts, soonest expiry first; none when no candidate is left.</summary>
    public async Task<IReadOnlyList<ClaimedToken>> NextAsync(int count)
    {
        var size = Math.Min(count + Slack, MostLooked);
        while (true)
        {
            if (_window.Count < size)
            {
                _window.AddRange(await candidates.NextAsync(size - _window.Count));
            }

            if (_window.Count == 0)
            {
                return [];
            }

            var passed = _window.Take(size).Select(c => c.Id).ToArray();
            var looked = await claim(passed, count);
            // The claim looked at the candidates in order: those before its last row, and that row, are done with (taken
            // now, or by another process, or no longer due). Fewer rows than asked for means it looked at them all.
            _window.RemoveRange(0, looked.Count < count ? passed.Length : Array.IndexOf(passed, looked[^1].Id) + 1);
            if (looked.Where(r => r.Claimed).ToList() is { Count: > 0 } claimed)
            {
                return claimed;
            }
        }
    }

    public ValueTask DisposeAsync() => candidates.DisposeAsync();
}

/// <summary>A due account as a page lists it: its id, its label, and its expiry (the page's position).</summary>
internal sealed record DueCandidate(string Id, string? Label, DateTimeOffset? ExpiresAt);
