using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Npgsql;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.Availability;

/// <summary>
/// One look at the stored tokens, as the main application reads them: which accounts' access tokens the platform would
/// refuse at that moment (keys "etsy:&lt;user_id&gt;" and "shop:&lt;domain&gt;"), out of how many, and the counters beside.
/// </summary>
internal sealed record Sample(
    DateTimeOffset At, int Eligible, IReadOnlyList<string> Invalid, IReadOnlySet<string> Flagged, double IdleInTransactionSeconds,
    long EtsyCalls, long ShopifyCalls, double CpuSeconds, int RotationsInFlight);

internal sealed class Sampler(string adminDb, FakePlatformServer fake, Dictionary<string, DateTimeOffset> revoked, Lock revokedLock, SemaphoreSlim reading)
{
    /// <summary>How long after a Shopify refresh its replaced access token still counts: the time for its answer to be stored.</summary>
    public static readonly TimeSpan RotationGrace = TimeSpan.FromSeconds(2);

    /// <summary>A sample, or null while the database cannot be read (it is restarting).</summary>
    public async Task<Sample?> TakeAsync()
    {
        await reading.WaitAsync();
        try
        {
            await using var c = new NpgsqlConnection(adminDb);
            await c.OpenAsync();
            var etsy = await c.QueryAsync<(string Id, string? Access)>("SELECT user_id::text, access_token FROM etsy_users");
            var shops = await c.QueryAsync<(string Shop, string? Access, bool Active)>("SELECT shop_domain, access_token, is_active FROM shopify_stores");
            var needsReauth = (await c.QueryAsync<string>("SELECT account_id FROM token_refresh_state WHERE platform = 'etsy' AND needs_reauth")).ToHashSet();
            var idle = await c.ExecuteScalarAsync<double?>("""
                SELECT max(extract(epoch FROM clock_timestamp() - state_change))::float8 FROM pg_stat_activity
                WHERE usename = 'tokenrefresh' AND state LIKE 'idle in transaction%'
                """) ?? 0;
            var at = DateTimeOffset.UtcNow;
            Dictionary<string, DateTimeOffset> gone;
            lock (revokedLock)
            {
                gone = new Dictionary<string, DateTimeOffset>(revoked);
            }

            var invalid = new List<string>();
            var rotations = 0;
            var flagged = new HashSet<string>();
            var eligible = 0;
            foreach (var (id, access) in etsy)
            {
                var key = "etsy:" + id;
                if (gone.ContainsKey(key))
                {
                    if (needsReauth.Contains(id))
                    {
                        flagged.Add(key);
                    }

                    continue;
                }

                eligible++;
                if (!fake.Etsy.IsAccessTokenValid(access, at))
                {
                    invalid.Add(key);
                }
            }

            foreach (var (shop, access, active) in shops)
            {
                var key = "shop:" + shop;
                if (gone.ContainsKey(key))
                {
                    if (!active)
                    {
                        flagged.Add(key);
                    }

                    continue;
                }

                // An inactive store is one the main application no longer calls: unavailable, unless its merchant left.
                eligible++;
                if (active && !fake.Shopify.IsAccessTokenValid(shop, access, at) && fake.Shopify.WasReplacedWithin(shop, access, at, RotationGrace))
                {
                    // A refresh invalidates Shopify's old access token at once, and the new one is stored a moment later: the main
                    // application that reads the row again after a 401 (as docs/expiring-tokens.md asks) gets the new one. Counted apart.
                    rotations++;
                }
                else if (!active || !fake.Shopify.IsAccessTokenValid(shop, access, at))
                {
                    invalid.Add(key);
                }
            }

            return new Sample(at, eligible, invalid, flagged, idle, fake.Etsy.TotalCalls, fake.Shopify.TotalCalls, Replica.TotalCpuSeconds(), rotations);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            return null;
        }
        finally
        {
            reading.Release();
        }
    }
}

/// <summary>An Etsy user whose rotation was lost: when the request that rotated it arrived, and whether the service flagged it.</summary>
internal sealed record Lost(string Key, string RefreshToken, DateTimeOffset? At, bool Flagged);

internal sealed record Report(string Text, IReadOnlyList<string> Misses)
{
    public static async Task<IReadOnlyList<Lost>> LostAsync(
        string adminDb, FakePlatformServer fake, Dictionary<string, long> etsyIds, Dictionary<string, DateTimeOffset> revoked)
    {
        await using var c = new NpgsqlConnection(adminDb);
        var rows = await c.QueryAsync<(string Id, string Refresh, bool Flagged)>("""
            SELECT u.user_id::text, u.refresh_token,
                   COALESCE(s.needs_reauth AND s.token_hash = encode(sha256(convert_to(u.refresh_token, 'UTF8')), 'hex'), false)
            FROM etsy_users u LEFT JOIN token_refresh_state s ON s.platform = 'etsy' AND s.account_id = u.user_id::text
            """);
        return rows.Where(r => !revoked.ContainsKey("etsy:" + r.Id) && !fake.Etsy.IsValid(r.Refresh))
            .Select(r => new Lost("etsy:" + r.Id, r.Refresh, fake.Etsy.RotatedAt(r.Refresh), r.Flagged))
            .ToList();
    }

    public static Report Build(
        DayOptions o, IReadOnlyList<Fault> faults, IReadOnlyList<Sample> all, IReadOnlyList<Lost> lost, FakePlatformServer fake,
        Dictionary<string, DateTimeOffset> revoked, int reconnects, DateTimeOffset measureFrom, TimeSpan cycle, double scale)
    {
        var misses = new List<string>();
        var lostKeys = lost.Select(l => l.Key).ToHashSet();
        // The lost are counted apart (their users must reconnect), not as unavailability.
        var samples = all.Where(s => s.At >= measureFrom)
            .Select(s => s with { Eligible = s.Eligible - lostKeys.Count, Invalid = s.Invalid.Where(k => !lostKeys.Contains(k)).ToList() })
            .ToList();
        var accounts = o.EtsyUsers + o.Stores + o.ExpiringStores;
        var sentTwice = fake.Etsy.SentTwice.Concat(fake.Shopify.SentTwice).ToList();
        var lostTokens = lost.Select(l => l.RefreshToken).ToHashSet(StringComparer.Ordinal);
        var dayEnd = samples.Count > 0 ? samples[^1].At : measureFrom;

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{o.EtsyUsers:N0} Etsy users, {o.Stores:N0} Shopify stores with non-expiring tokens and {o.ExpiringStores:N0} with expiring tokens; access tokens live {o.TokenSeconds} s (an hour of the day passes in {o.TokenSeconds} s), margin 1 minute, a cycle every {o.CycleSeconds} s, two replicas through PgBouncer, {o.LatencyMs} ms platform latency; {reconnects} users reconnected during the day.");
        text.AppendLine();
        text.AppendLine("| fault | availability | lowest sample | every account valid again after it ended | platform calls per account per hour | refresh tokens sent twice | rotated tokens lost (flagged) | longest idle in transaction | service CPU ms per call |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|");
        for (var i = 0; i < faults.Count; i++)
        {
            var f = faults[i];
            var to = i + 1 < faults.Count ? faults[i + 1].Start : dayEnd;
            var window = samples.Where(s => s.At >= f.Start && s.At < to).ToList();
            var recovery = window.All(s => s.Invalid.Count == 0) ? 0 : Recovery(samples, f.End, to, cycle);
            if (recovery is not { } cycles || cycles > 1)
            {
                // Why, where the rate limit decides it: the Etsy accounts that expired together, and the least time their refreshes take.
                var backlog = window.Select(s => s.Invalid.Count(k => k.StartsWith("etsy:", StringComparison.Ordinal))).DefaultIfEmpty(0).Max();
                var rate = (int)(10 * scale);
                var least = backlog / (double)rate;
                misses.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{f.Name}: every account valid again {(recovery is { } c ? $"within {c} cycles" : "not within its segment")} (target: one cycle). Up to {backlog:N0} Etsy users' tokens had expired at once; at ETSY_MAX_REQUESTS_PER_SECOND={rate} their refreshes take at least {least:0} s ({Math.Ceiling(least / cycle.TotalSeconds):0} cycles), and a cycle claims for {Math.Max(5, o.CycleSeconds - 2)} s of its {o.CycleSeconds} s"));
            }

            var twice = sentTwice.Where(t => t.At >= f.Start && t.At < to).Select(t => t.RefreshToken).Distinct().ToList();
            var lostHere = lost.Where(l => l.At >= f.Start && l.At < to).ToList();
            text.AppendLine(Row(f.Name, window, recovery is { } r ? (r == 0 ? "none was unavailable" : $"within {r} cycle{(r == 1 ? "" : "s")}") : "not within its segment",
                twice, lostHere, accounts, scale));
        }

        // The whole day, and outside outages: an outage's window runs from its start to one cycle after its end (the cycle
        // in which the target lets every account be valid again).
        var outside = samples.Where(s => !faults.Any(f => f.Outage && s.At >= f.Start && s.At <= f.End + cycle)).ToList();
        var outsideAvailability = Availability(outside);
        if (outside.Any(s => s.Invalid.Count > 0))
        {
            // Where the unavailable account-samples outside outages were: while an outage's backlog drained, or elsewhere, by platform.
            var etsyOutage = faults.FirstOrDefault(f => f.Name.StartsWith("Etsy outage", StringComparison.Ordinal));
            var drainedBy = etsyOutage is null ? measureFrom : faults.SkipWhile(f => f != etsyOutage).Skip(1).Select(f => f.Start).DefaultIfEmpty(dayEnd).First();
            var drainingMisses = etsyOutage is null ? 0 : outside.Where(s => s.At > etsyOutage.End && s.At < drainedBy).Sum(s => s.Invalid.Count);
            var rest = outside.SelectMany(s => s.Invalid).GroupBy(k => k.StartsWith("etsy:", StringComparison.Ordinal) ? "Etsy" : "Shopify").ToDictionary(g => g.Key, g => g.Count());
            misses.Add(string.Create(CultureInfo.InvariantCulture,
                $"availability outside outages {outsideAvailability:P3} (target: 100%): {outside.Sum(s => s.Invalid.Count):N0} unavailable account-samples, {drainingMisses:N0} of them while the Etsy outage's backlog drained; by platform: Etsy {rest.GetValueOrDefault("Etsy"):N0}, Shopify {rest.GetValueOrDefault("Shopify"):N0}"));
        }

        var allTwice = sentTwice.Where(t => t.At >= measureFrom).Select(t => t.RefreshToken).Distinct().ToList();
        text.AppendLine(Row($"**whole day** (outside outages: {outsideAvailability:P3})", samples, "", allTwice, lost.ToList(), accounts, scale));

        // Etsy's daily quota: its calls in a day at this pace (an hour passes in TokenSeconds) against 100,000 a day.
        var span = samples.Count > 1 ? (samples[^1].At - samples[0].At).TotalSeconds : 0;
        var etsyPerDay = span > 0 ? (samples[^1].EtsyCalls - samples[0].EtsyCalls) / (span * scale / 86400) : 0;
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"Etsy requests per day at this pace: {etsyPerDay:N0}, {etsyPerDay / fake.Etsy.LimitPerDay:P0} of a daily quota of {fake.Etsy.LimitPerDay:N0} ({o.EtsyUsers:N0} users).");

        // Revocations: how long until each was flagged (Etsy: needs_reauth; Shopify: the store deactivated).
        var flaggedAt = new Dictionary<string, DateTimeOffset>();
        foreach (var s in all)
        {
            foreach (var key in s.Flagged)
            {
                flaggedAt.TryAdd(key, s.At);
            }
        }

        var waits = revoked.Select(r => flaggedAt.TryGetValue(r.Key, out var at) ? (at - r.Value).TotalSeconds : (double?)null).ToList();
        var unflagged = waits.Count(w => w is null);
        var longest = waits.Where(w => w is not null).Select(w => w!.Value).DefaultIfEmpty(0).Max();
        text.AppendLine(CultureInfo.InvariantCulture, $"Revoked by their users: {revoked.Count(r => r.Key.StartsWith("etsy:", StringComparison.Ordinal))} Etsy users and {revoked.Count(r => r.Key.StartsWith("shop:", StringComparison.Ordinal))} stores; flagged for re-authorisation (or deactivated) within {longest:0} s ({Math.Ceiling(longest / cycle.TotalSeconds):0} cycles; their tokens fall due at most {o.TokenSeconds - 60} s after the revocation){(unflagged > 0 ? $"; {unflagged} not flagged by the end" : "")}.");
        if (unflagged > 0)
        {
            misses.Add($"{unflagged} revoked accounts were never flagged");
        }

        // Lost rotations: only answers that never arrived (the killed replica's), each flagged; tokens sent twice only those.
        var killed = faults.FirstOrDefault(f => f.Name.Contains("SIGKILL", StringComparison.Ordinal));
        var strays = lost.Where(l => killed is null || l.At is not { } at || at < killed.Start - TimeSpan.FromSeconds(o.HttpTimeoutSeconds) || at > killed.End).ToList();
        text.AppendLine(CultureInfo.InvariantCulture, $"Rotated tokens lost: {lost.Count}, {lost.Count(l => l.Flagged)} of them flagged for re-authorisation; {lost.Count - strays.Count} were requests in flight when a replica was killed (answers that never arrived).");
        if (strays.Count > 0)
        {
            misses.Add($"{strays.Count} rotated tokens lost other than to the killed replica's requests in flight");
        }

        if (lost.Any(l => !l.Flagged))
        {
            misses.Add($"{lost.Count(l => !l.Flagged)} lost rotations not flagged for re-authorisation");
        }

        var twiceNotLost = allTwice.Count(t => !lostTokens.Contains(t));
        text.AppendLine(CultureInfo.InvariantCulture, $"Refresh tokens sent twice (a second request while the first was in flight, or after the platform had used the token up): {allTwice.Count}; {allTwice.Count - twiceNotLost} of them are lost answers' tokens, sent again once their lease ran out (the unknown-outcome rule: the first invalid_grant is not believed).");
        foreach (var (at, token) in sentTwice.Where(t => !lostTokens.Contains(t.RefreshToken)).Take(5))
        {
            // The fakes' tokens begin with the Etsy user id: which account, for the replicas' logs (never the token).
            text.AppendLine(CultureInfo.InvariantCulture, $"  sent twice at {at:HH:mm:ss.fff}: a token of Etsy user {token.Split('.')[0]}, sent {fake.Etsy.CallsFor(token)} times, rotated at {fake.Etsy.RotatedAt(token):HH:mm:ss.fff}");
        }

        if (twiceNotLost > 0)
        {
            misses.Add($"{twiceNotLost} refresh tokens sent twice that were not lost answers'");
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"Shopify rotations caught between the platform's answer and the write (the old access token already refused, the new one not yet stored; counted as available, since a main application that reads the row again after a 401 gets the new one): {samples.Sum(s => s.RotationsInFlight):N0} account-samples.");
        var idle = samples.Select(s => s.IdleInTransactionSeconds).DefaultIfEmpty(0).Max();
        if (idle > 1)
        {
            misses.Add($"a session stayed idle in a transaction for {idle:0.0} s");
        }

        text.AppendLine();
        text.AppendLine(misses.Count == 0 ? "Every target held." : "Targets missed:");
        foreach (var miss in misses)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"- {miss}");
        }

        return new Report(text.ToString(), misses);
    }

    /// <summary>Whole cycles from <paramref name="end"/> until a sample found every account valid; null if none did before <paramref name="to"/>.</summary>
    private static int? Recovery(IReadOnlyList<Sample> samples, DateTimeOffset end, DateTimeOffset to, TimeSpan cycle)
    {
        var first = samples.FirstOrDefault(s => s.At >= end && s.At < to + cycle && s.Invalid.Count == 0);
        return first is null ? null : (int)Math.Ceiling((first.At - end) / cycle - 1e-9);
    }

    private static double Availability(IReadOnlyList<Sample> samples)
    {
        var eligible = samples.Sum(s => (long)s.Eligible);
        return eligible == 0 ? 1 : 1 - samples.Sum(s => (long)s.Invalid.Count) / (double)eligible;
    }

    private static string Row(string name, List<Sample> window, string recovery, List<string> twice, List<Lost> lost, int accounts, double scale)
    {
        var lowest = window.Select(s => s.Eligible == 0 ? 1 : 1 - s.Invalid.Count / (double)s.Eligible).DefaultIfEmpty(1).Min();
        var calls = window.Count > 1 ? (window[^1].EtsyCalls + window[^1].ShopifyCalls) - (window[0].EtsyCalls + window[0].ShopifyCalls) : 0;
        var seconds = window.Count > 1 ? (window[^1].At - window[0].At).TotalSeconds : 0;
        var perHour = seconds > 0 ? calls / (double)accounts / (seconds * scale / 3600) : 0;
        var cpu = window.Count > 1 ? window[^1].CpuSeconds - window[0].CpuSeconds : 0;
        var idle = window.Select(s => s.IdleInTransactionSeconds).DefaultIfEmpty(0).Max();
        return string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {Availability(window):P3} | {lowest:P1} | {recovery} | {perHour:0.0} | {twice.Count} | {lost.Count} ({lost.Count(l => l.Flagged)}) | {idle:0.00} s | {(calls > 0 ? cpu * 1000 / calls : 0):0.00} |");
    }
}
