using System.Globalization;
using System.Text;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.Availability;

/// <summary>The report's lines about accounts, with their targets: the quota, revocations, lost rotations, tokens sent twice, idle transactions.</summary>
internal static class AccountChecks
{
    public static void Write(DayRecord day, FakePlatformServer fake, List<Sample> samples, StringBuilder text, List<string> misses)
    {
        var read = samples.Where(s => !s.Failed).ToList();
        Quota(day, fake, read, text);
        Revocations(day, read, text, misses);
        LostAndSentTwice(day, fake, text, misses);
        LeftBehindLeases(day, read, text, misses);
        ShopifyInFlight(day, read, text, misses);
        var idle = read.Select(s => s.IdleInTransactionSeconds).DefaultIfEmpty(0).Max();
        if (idle > 1)
        {
            misses.Add($"a session stayed idle in a transaction for {idle:0.0} s");
        }
    }

    // Etsy's daily quota: its calls in a day at this pace (an hour passes in TokenSeconds) against 100,000 a day.
    private static void Quota(DayRecord day, FakePlatformServer fake, List<Sample> read, StringBuilder text)
    {
        var span = read.Count > 1 ? (read[^1].At - read[0].At).TotalSeconds : 0;
        var etsyPerDay = span > 0 ? (read[^1].EtsyCalls - read[0].EtsyCalls) / (span * day.Scale / 86400) : 0;
        text.AppendLine(CultureInfo.InvariantCulture, $"Etsy requests per day at this pace: {etsyPerDay:N0}, {etsyPerDay / fake.Etsy.LimitPerDay:P0} of a daily quota of {fake.Etsy.LimitPerDay:N0} ({day.Options.EtsyUsers:N0} users).");
    }

    // Revocations: how long until each was flagged (Etsy: needs_reauth; Shopify: the store deactivated).
    private static void Revocations(DayRecord day, List<Sample> read, StringBuilder text, List<string> misses)
    {
        var flaggedAt = new Dictionary<string, DateTimeOffset>();
        foreach (var s in read)
        {
            foreach (var key in s.Flagged.Where(day.Revoked.ContainsKey))
            {
                flaggedAt.TryAdd(key, s.At);
            }
        }

        var waits = day.Revoked.Select(r => flaggedAt.TryGetValue(r.Key, out var at) ? (at - r.Value).TotalSeconds : (double?)null).ToList();
        var unflagged = waits.Count(w => w is null);
        var longest = waits.Where(w => w is not null).Select(w => w!.Value).DefaultIfEmpty(0).Max();
        text.AppendLine(CultureInfo.InvariantCulture, $"Revoked by their users: {day.Revoked.Count(r => r.Key.StartsWith("etsy:", StringComparison.Ordinal))} Etsy users and {day.Revoked.Count(r => r.Key.StartsWith("shop:", StringComparison.Ordinal))} stores; flagged for re-authorisation (or deactivated) within {longest:0} s ({Math.Ceiling(longest / day.Cycle.TotalSeconds):0} cycles; their tokens fall due at most {day.Options.TokenSeconds - 60} s after the revocation){(unflagged > 0 ? $"; {unflagged} not flagged by the end" : "")}.");
        if (unflagged > 0)
        {
            misses.Add($"{unflagged} revoked accounts were never flagged");
        }
    }

    // The killed replica's leases: each account whose token outlived its lease is refreshed by another replica after the
    // lease ran out, before the token expired (not in any sample's invalid list); a request in flight at the kill is a lost answer.
    private static void LeftBehindLeases(DayRecord day, List<Sample> read, StringBuilder text, List<string> misses)
    {
        if (day.Killed is not { } k)
        {
            return;
        }

        var excluded = day.Lost.Select(l => l.Key).Concat(day.Revoked.Keys).ToHashSet(StringComparer.Ordinal);
        var outlived = k.Held.Where(h => h.ExpiresAt > h.LeaseUntil && !excluded.Contains(h.Key)).ToList();
        var expired = outlived.Count(h => read.Any(s => s.At >= k.At && s.At <= h.ExpiresAt + day.Cycle * 2 && s.Invalid.Contains(h.Key)));
        var leaseEnds = k.Held.Select(h => (h.LeaseUntil - k.At).TotalSeconds).DefaultIfEmpty(0).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"Killed replica: it held {k.Held.Count} Etsy leases, ending {leaseEnds.Min():0}-{leaseEnds.Max():0} s after the kill; {outlived.Count} of their tokens had more time left than their lease (the rest were lost answers or revoked), and {expired} of those expired before another replica refreshed them.");
        if (k.Held.Count == 0)
        {
            misses.Add("the replica was killed holding no lease, so the kill proved nothing about leases left behind");
        }

        if (expired > 0)
        {
            misses.Add($"{expired} tokens that outlived the killed replica's leases expired behind them");
        }
    }

    // Lost rotations: only answers that never arrived (the killed replica's), each flagged; tokens sent twice only those.
    private static void LostAndSentTwice(DayRecord day, FakePlatformServer fake, StringBuilder text, List<string> misses)
    {
        var lost = day.Lost;
        var killed = day.Faults.FirstOrDefault(f => f.Name.Contains("SIGKILL", StringComparison.Ordinal));
        var strays = lost.Where(l => killed is null || l.At is not { } at || at < killed.Start - TimeSpan.FromSeconds(day.Options.HttpTimeoutSeconds) || at > killed.End).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"Rotated tokens lost: {lost.Count}, {lost.Count(l => l.Flagged)} of them flagged for re-authorisation; {lost.Count - strays.Count} were requests in flight when a replica was killed (answers that never arrived).");
        if (strays.Count > 0)
        {
            misses.Add($"{strays.Count} rotated tokens lost other than to the killed replica's requests in flight");
        }

        if (lost.Any(l => !l.Flagged))
        {
            misses.Add($"{lost.Count(l => !l.Flagged)} lost rotations not flagged for re-authorisation");
        }

        // A lost answer's token: its rotation stayed lost, or (a platform that honours a used token for a while, as
        // Shopify does) it was first sent by a request in flight when the replica was killed.
        var lostTokens = lost.Select(l => l.RefreshToken).ToHashSet(StringComparer.Ordinal);
        bool InFlightAtKill(DateTimeOffset? first) => killed is not null && first is { } at
            && at >= killed.Start - TimeSpan.FromSeconds(day.Options.HttpTimeoutSeconds) && at <= killed.End;
        lostTokens.UnionWith(fake.Shopify.SentTwice.Select(t => t.RefreshToken).Where(t => InFlightAtKill(fake.Shopify.FirstSentAt(t))));
        lostTokens.UnionWith(fake.Etsy.SentTwice.Select(t => t.RefreshToken).Where(t => InFlightAtKill(fake.Etsy.FirstSentAt(t))));
        var sentTwice = fake.Etsy.SentTwice.Concat(fake.Shopify.SentTwice).Where(t => t.At >= day.MeasureFrom).ToList();
        var allTwice = sentTwice.Select(t => t.RefreshToken).Distinct().ToList();
        var twiceNotLost = allTwice.Count(t => !lostTokens.Contains(t));
        text.AppendLine(CultureInfo.InvariantCulture, $"Refresh tokens sent twice (a second request while the first was in flight, or after the platform had used the token up): {allTwice.Count}; {allTwice.Count - twiceNotLost} of them are lost answers' tokens, sent again once their lease ran out (the unknown-outcome rule: the first invalid_grant is not believed).");
        foreach (var (at, token) in sentTwice.Where(t => !lostTokens.Contains(t.RefreshToken)).Take(5))
        {
            // The fakes' Etsy tokens begin with the user id: which account, for the replicas' logs (never the token).
            var first = fake.Etsy.FirstSentAt(token) ?? fake.Shopify.FirstSentAt(token);
            text.AppendLine(fake.Etsy.FirstSentAt(token) is not null
                ? string.Create(CultureInfo.InvariantCulture, $"  sent twice at {at:HH:mm:ss.fff}: a token of Etsy user {token.Split('.')[0]}, first sent at {first:HH:mm:ss.fff}, sent {fake.Etsy.CallsFor(token)} times, rotated at {fake.Etsy.RotatedAt(token):HH:mm:ss.fff}")
                : string.Create(CultureInfo.InvariantCulture, $"  sent twice at {at:HH:mm:ss.fff}: a Shopify store's refresh token, first sent at {first:HH:mm:ss.fff}"));
        }

        if (twiceNotLost > 0)
        {
            misses.Add($"{twiceNotLost} refresh tokens sent twice that were not lost answers'");
        }
    }

    /// <summary>
    /// The stores whose Shopify refresh was in flight when the replica was killed: Shopify replaced their access token,
    /// and the answer never arrived, so each is unavailable until its lease runs out and the refresh is repeated with the
    /// previous refresh token (which Shopify keeps usable). Seen as a store the replica held that a sample found refused
    /// before its lease ended.
    /// </summary>
    public static IReadOnlySet<string> ShopifyLostAnswers(DayRecord day) =>
        day.Killed is not { } k ? new HashSet<string>() : k.ShopifyHeld
            .Where(h => !day.Revoked.ContainsKey(h.Key)
                && day.Samples.Any(s => !s.Failed && s.At >= k.At && s.At <= h.LeaseUntil && s.Invalid.Contains(h.Key)))
            .Select(h => h.Key).ToHashSet(StringComparer.Ordinal);

    // Those stores' own target: valid again within a cycle and a sample of their lease's end (or of the end of a fault
    // then in force, which the repeated refresh meets), and never flagged or deactivated.
    private static void ShopifyInFlight(DayRecord day, List<Sample> read, StringBuilder text, List<string> misses)
    {
        if (day.Killed is not { } k)
        {
            return;
        }

        var lost = ShopifyLostAnswers(day);
        var after = new List<double>();
        foreach (var (key, leaseUntil) in k.ShopifyHeld.Where(h => lost.Contains(h.Key)))
        {
            var deadline = leaseUntil + day.Cycle + TimeSpan.FromSeconds(day.Options.SampleSeconds);
            foreach (var f in day.Faults.Where(f => f.Outage && f.Start <= deadline && f.End >= leaseUntil))
            {
                deadline = Max(deadline, f.End + day.Cycle + TimeSpan.FromSeconds(day.Options.SampleSeconds));
            }

            var valid = read.FirstOrDefault(s => s.At >= leaseUntil && !s.Invalid.Contains(key));
            after.Add(valid is null ? double.PositiveInfinity : (valid.At - leaseUntil).TotalSeconds);
            if (valid is null || valid.At > deadline)
            {
                misses.Add($"{key}, whose refresh was in flight at the kill, not valid again by {deadline:HH:mm:ss.f} (a cycle after its lease ran out, or after a fault then in force)");
            }

            if (read.Any(s => s.Flagged.Contains(key)))
            {
                misses.Add($"{key}, whose refresh was in flight at the kill, was flagged or deactivated");
            }
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"Shopify stores with expiring tokens the killed replica held: {k.ShopifyHeld.Count}; {lost.Count} of them had their refresh in flight (Shopify replaced the access token, the answer never arrived), unavailable until their lease ran out{(after.Count > 0 ? $", valid again {after.Min():0.0}-{after.Max():0.0} s after it" : "")}.");

        static DateTimeOffset Max(DateTimeOffset a, DateTimeOffset b) => a > b ? a : b;
    }
}
