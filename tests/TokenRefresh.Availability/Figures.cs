namespace TokenRefresh.Availability;

/// <summary>
/// What one sample counts three ways. <b>Plain</b>: every account, every refused token, nothing excluded. <b>Adjusted</b>:
/// leaves out the accounts whose users revoked access (from the revocation: only the user can help) and the lost
/// answers' accounts once they are flagged (the main application has been told), and counts as available a Shopify
/// store caught between a refresh's answer and its write (a reread after a 401 finds the new token). A lost answer's
/// account counts as unavailable from the moment its token expires until it is flagged; a Shopify store whose refresh was
/// in flight at the kill (never flagged) counts as unavailable until it is refreshed again. <b>Target</b>: the adjusted
/// figure without the lost answers' accounts, which have targets of their own (Etsy's: how many, and all flagged;
/// Shopify's: valid again a cycle after the lease).
/// </summary>
internal readonly record struct Counts(
    int PlainTotal, int PlainInvalid, int AdjustedTotal, int AdjustedInvalid, int TargetTotal, int TargetInvalid,
    int Revoked, int LostFlagged, int Rotating, int EtsyTargetInvalid)
{
    public static Counts Of(Sample s, IReadOnlySet<string> lost)
    {
        bool Excluded(string key) => s.Revoked.Contains(key) || (lost.Contains(key) && s.Flagged.Contains(key));
        var lostFlagged = lost.Count(k => !s.Revoked.Contains(k) && s.Flagged.Contains(k));
        var adjustedInvalid = s.Invalid.Where(k => !Excluded(k) && !s.Rotating.Contains(k)).ToList();
        var lostOpen = lost.Count(k => !Excluded(k));
        var targetInvalid = adjustedInvalid.Where(k => !lost.Contains(k)).ToList();
        var adjustedTotal = s.Total - s.Revoked.Count - lostFlagged;
        return new Counts(
            s.Total, s.Invalid.Count, adjustedTotal, adjustedInvalid.Count, adjustedTotal - lostOpen, targetInvalid.Count,
            s.Revoked.Count, lostFlagged, s.Rotating.Count, targetInvalid.Count(k => k.StartsWith("etsy:", StringComparison.Ordinal)));
    }
}

/// <summary>Availability over samples, three ways (see <see cref="Counts"/>); gaps (failed samples) count in none of them.</summary>
internal sealed class Figures(IReadOnlyList<Sample> samples, IReadOnlySet<string> lost)
{
    private readonly Dictionary<Sample, Counts> _counts = samples.Where(s => !s.Failed).ToDictionary(s => s, s => Counts.Of(s, lost));

    public IReadOnlySet<string> Lost => lost;

    public Counts this[Sample s] => _counts[s];

    public IEnumerable<Sample> Read(IEnumerable<Sample> window) => window.Where(s => !s.Failed);

    public double Plain(IEnumerable<Sample> window) => Ratio(Read(window).Select(s => (_counts[s].PlainTotal, _counts[s].PlainInvalid)));

    public double Adjusted(IEnumerable<Sample> window) => Ratio(Read(window).Select(s => (_counts[s].AdjustedTotal, _counts[s].AdjustedInvalid)));

    public double Target(IEnumerable<Sample> window) => Ratio(Read(window).Select(s => (_counts[s].TargetTotal, _counts[s].TargetInvalid)));

    public double Lowest(IEnumerable<Sample> window) =>
        Read(window).Select(s => _counts[s]).Select(c => c.AdjustedTotal == 0 ? 1 : 1 - c.AdjustedInvalid / (double)c.AdjustedTotal).DefaultIfEmpty(1).Min();

    /// <summary>The first sample at or after <paramref name="from"/>, before <paramref name="to"/>, at which no account counted for the targets was unavailable.</summary>
    public Sample? AllValidFrom(DateTimeOffset from, DateTimeOffset to) =>
        Read(samples).FirstOrDefault(s => s.At >= from && s.At < to && _counts[s].TargetInvalid == 0);

    /// <summary>Stretches of the day longer than <paramref name="most"/> with no sample that read the database.</summary>
    public IEnumerable<(DateTimeOffset From, DateTimeOffset To)> Gaps(DateTimeOffset from, DateTimeOffset to, TimeSpan most)
    {
        var last = from;
        foreach (var s in Read(samples).Where(s => s.At >= from && s.At <= to).Append(Sample.Gap(to))) // the day's end closes the last stretch
        {
            if (s.At - last > most)
            {
                yield return (last, s.At);
            }

            last = s.At;
        }
    }

    private static double Ratio(IEnumerable<(int Total, int Invalid)> counts)
    {
        long total = 0, invalid = 0;
        foreach (var (t, i) in counts)
        {
            total += t;
            invalid += i;
        }

        return total == 0 ? 1 : 1 - invalid / (double)total;
    }
}
