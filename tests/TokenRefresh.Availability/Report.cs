using System.Globalization;
using System.Text;
using Dapper;
using Npgsql;
using TokenRefresh.FakePlatforms;

namespace TokenRefresh.Availability;

/// <summary>An Etsy user whose rotation was lost: when the request that rotated it arrived, and whether the service flagged it.</summary>
internal sealed record Lost(string Key, string RefreshToken, DateTimeOffset? At, bool Flagged);

/// <summary>What a replica proved: the cycles it completed, and an exit nobody asked for (or a bad one on SIGTERM).</summary>
internal sealed record ReplicaReport(string Name, int Cycles, string? Problem);

/// <summary>The day as it went: its options and pace, its faults, its samples, and what was found at its end.</summary>
internal sealed record DayRecord(
    DayOptions Options, IReadOnlyList<Fault> Faults, IReadOnlyList<Sample> Samples, IReadOnlyList<Lost> Lost, IReadOnlyList<ReplicaReport> Replicas,
    Dictionary<string, DateTimeOffset> Revoked, int Reconnects, DateTimeOffset MeasureFrom, TimeSpan Cycle, double Scale, int EtsyRate,
    KilledLeases? Killed, IReadOnlyCollection<string> Tunnels);

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

    public static Report Build(DayRecord day, FakePlatformServer fake)
    {
        var writer = new ReportWriter(day, fake);
        writer.Table();
        writer.Figures();
        writer.Backlog();
        writer.Gaps();
        writer.Replicas();
        writer.Network();
        writer.Accounts();
        return writer.Finish();
    }
}

/// <summary>The report's sections, each with the targets it checks.</summary>
internal sealed class ReportWriter
{
    private readonly DayRecord _day;
    private readonly FakePlatformServer _fake;
    private readonly Figures _figures;
    private readonly List<Sample> _samples;
    private readonly StringBuilder _text = new();
    private readonly List<string> _misses = [];
    private readonly DateTimeOffset _dayEnd;

    public ReportWriter(DayRecord day, FakePlatformServer fake)
    {
        (_day, _fake) = (day, fake);
        _samples = [.. day.Samples.Where(s => s.At >= day.MeasureFrom)];
        _figures = new Figures(_samples, day.Lost.Select(l => l.Key).Concat(AccountChecks.ShopifyLostAnswers(day)).ToHashSet());
        _dayEnd = _samples.Count > 0 ? _samples[^1].At : day.MeasureFrom;
    }

    private DayOptions O => _day.Options;

    public Report Finish()
    {
        _text.AppendLine();
        _text.AppendLine(_misses.Count == 0 ? "Every target held." : "Targets missed:");
        foreach (var miss in _misses)
        {
            _text.AppendLine(CultureInfo.InvariantCulture, $"- {miss}");
        }

        return new Report(_text.ToString(), _misses);
    }

    public void Table()
    {
        _text.AppendLine(CultureInfo.InvariantCulture, $"{O.EtsyUsers:N0} Etsy users, {O.Stores:N0} Shopify stores with non-expiring tokens and {O.ExpiringStores:N0} with expiring tokens; access tokens live {O.TokenSeconds} s (an hour of the day passes in {O.TokenSeconds} s), margin 1 minute, a cycle every {O.CycleSeconds} s, non-expiring tokens validated every {O.ValidateMinutes} min, Etsy's limit {_day.EtsyRate}/s, two replicas through PgBouncer, {O.LatencyMs} ms platform latency; {_day.Reconnects} users reconnected during the day.");
        _text.AppendLine();
        _text.AppendLine("| fault | availability (adjusted) | plain | lowest sample | every account valid again after it ended | platform calls per account per hour | refresh tokens sent twice | rotated tokens lost (flagged) | longest idle in transaction | service CPU ms per call |");
        _text.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        var sentTwice = _fake.Etsy.SentTwice.Concat(_fake.Shopify.SentTwice).ToList();
        for (var i = 0; i < _day.Faults.Count; i++)
        {
            var f = _day.Faults[i];
            var to = i + 1 < _day.Faults.Count ? _day.Faults[i + 1].Start : _dayEnd;
            var window = _samples.Where(s => s.At >= f.Start && s.At < to).ToList();
            var twice = sentTwice.Where(t => t.At >= f.Start && t.At < to).Select(t => t.RefreshToken).Distinct().Count();
            Row(f.Name, window, f.Backlog ? BacklogRecovery(f, to) : Recovery(f, window, to), twice, [.. _day.Lost.Where(l => l.At >= f.Start && l.At < to)]);
        }

        var allTwice = sentTwice.Where(t => t.At >= _day.MeasureFrom).Select(t => t.RefreshToken).Distinct().Count();
        Row($"**whole day** (outside faults: {_figures.Target(OutsideFaults()):P3})", _samples, "", allTwice, [.. _day.Lost]);
    }

    // Whole cycles from the fault's end until every account counted for the targets was valid; more than one is a miss.
    private string Recovery(Fault f, List<Sample> window, DateTimeOffset to)
    {
        if (_figures.Read(window).All(s => _figures[s].TargetInvalid == 0))
        {
            return "none was unavailable";
        }

        if (_figures.AllValidFrom(f.End, to + _day.Cycle) is not { } first)
        {
            _misses.Add($"{f.Name}: every account valid again not within its segment (target: one cycle)");
            return "not within its segment";
        }

        var cycles = (int)Math.Ceiling((first.At - f.End) / _day.Cycle - 1e-9);
        if (cycles > 1)
        {
            _misses.Add($"{f.Name}: every account valid again within {cycles} cycles (target: one cycle)");
        }

        return $"within {cycles} cycle{(cycles == 1 ? "" : "s")}";
    }

    private string BacklogRecovery(Fault f, DateTimeOffset to)
    {
        var (bound, due, expired) = Bound(f);
        var first = _figures.AllValidFrom(f.End, to + _day.Cycle);
        var seconds = first is null ? (double?)null : (first.At - f.End).TotalSeconds;
        if (seconds is not { } s || s > bound.TotalSeconds)
        {
            _misses.Add(string.Create(CultureInfo.InvariantCulture,
                $"{f.Name}: every account valid again {(seconds is { } x ? $"after {x:0.0} s" : "not within its segment")}, beyond the bound of {bound.TotalSeconds:0.0} s (a cycle and its start, {due} tokens due at {_day.EtsyRate}/s, a sample)"));
        }

        return string.Create(CultureInfo.InvariantCulture,
            $"{(seconds is { } y ? $"after {y:0.0} s" : "not within its segment")} (bound {bound.TotalSeconds:0.0} s: {due:N0} due, {expired:N0} of them expired)");
    }

    /// <summary>The refresh margin the day runs with: a token within it at the outage's end is owed a refresh.</summary>
    public static readonly TimeSpan Margin = TimeSpan.FromMinutes(1);

    /// <summary>
    /// An outage that outlasted the margin: a cycle for the platform to be found answering (and half a second for that
    /// cycle's own start: count, list, claim), then the backlog at the rate limit, measured to a sample. The backlog is
    /// every token that expired or fell due during the outage: one left for later expires while the others are refreshed.
    /// </summary>
    private static readonly TimeSpan CycleStart = TimeSpan.FromSeconds(0.5);

    private (TimeSpan Bound, int Due, int Expired) Bound(Fault f)
    {
        var atEnd = _figures.Read(_samples).Where(s => s.At >= f.End - _day.Cycle && s.At <= f.End + _day.Cycle).ToList();
        var due = atEnd.Select(s => s.EtsyDue).DefaultIfEmpty(0).Max();
        var expired = atEnd.Select(s => _figures[s].EtsyTargetInvalid).DefaultIfEmpty(0).Max();
        return (_day.Cycle + CycleStart + TimeSpan.FromSeconds(due / (double)_day.EtsyRate) + TimeSpan.FromSeconds(O.SampleSeconds), due, expired);
    }

    // The samples outside every fault window: an outage's runs from its start to one cycle after its end (the backlog
    // outage's, to its bound). The windows are worked out once, not for each sample.
    private List<Sample> OutsideFaults()
    {
        var windows = _day.Faults.Where(f => f.Outage).Select(f => (f.Start, End: f.End + (f.Backlog ? Bound(f).Bound : _day.Cycle))).ToList();
        return [.. _samples.Where(s => !windows.Any(w => s.At >= w.Start && s.At <= w.End))];
    }

    private void Row(string name, List<Sample> window, string recovery, int twice, List<Lost> lost)
    {
        var read = _figures.Read(window).ToList();
        var calls = read.Count > 1 ? (read[^1].EtsyCalls + read[^1].ShopifyCalls) - (read[0].EtsyCalls + read[0].ShopifyCalls) : 0;
        var seconds = read.Count > 1 ? (read[^1].At - read[0].At).TotalSeconds : 0;
        var accounts = O.EtsyUsers + O.Stores + O.ExpiringStores;
        var perHour = seconds > 0 ? calls / (double)accounts / (seconds * _day.Scale / 3600) : 0;
        var cpu = read.Count > 1 ? read[^1].CpuSeconds - read[0].CpuSeconds : 0;
        var idle = read.Select(s => s.IdleInTransactionSeconds).DefaultIfEmpty(0).Max();
        _text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {_figures.Adjusted(window):P3} | {_figures.Plain(window):P3} | {_figures.Lowest(window):P1} | {recovery} | {perHour:0.0} | {twice} | {lost.Count} ({lost.Count(l => l.Flagged)}) | {idle:0.00} s | {(calls > 0 ? cpu * 1000 / calls : 0):0.00} |"));
    }

    public void Figures()
    {
        var read = _figures.Read(_samples).Select(s => _figures[s]).ToList();
        var outsideFaults = OutsideFaults();
        var outside = _figures.Target(outsideFaults);
        _text.AppendLine();
        _text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Availability over the day: plain {_figures.Plain(_samples):P3} (nothing excluded: every account and every refused token, {read.Sum(c => c.PlainInvalid):N0} of {read.Sum(c => (long)c.PlainTotal):N0} account-samples); adjusted {_figures.Adjusted(_samples):P3}, which leaves out {read.Sum(c => c.Revoked):N0} account-samples of users who had revoked access (from the revocation) and {read.Sum(c => c.LostFlagged):N0} of lost answers' accounts once flagged (before that they count as unavailable), and counts as available {read.Sum(c => c.Rotating):N0} of Shopify stores between a refresh's answer and its write; outside faults {outside:P3} (each outage from its start to a cycle after its end, the backlog's to its bound; the lost answers' accounts, judged by their own targets below, left out)."));
        var unavailable = _figures.Read(outsideFaults).Sum(s => _figures[s].TargetInvalid);
        if (unavailable > 0)
        {
            _misses.Add(string.Create(CultureInfo.InvariantCulture, $"availability outside faults {outside:P3} (target: 100%): {unavailable:N0} unavailable account-samples"));
        }
    }

    public void Backlog()
    {
        foreach (var f in _day.Faults.Where(f => f.Backlog))
        {
            var expired = _figures.Read(_samples).Where(s => s.At >= f.Start && s.At <= f.End).Select(s => _figures[s].EtsyTargetInvalid).DefaultIfEmpty(0).Max();
            var (bound, due, atEnd) = Bound(f);
            _text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"{f.Name}: up to {expired:N0} Etsy users' tokens had expired during it, {atEnd:N0} around its end, and {due:N0} had expired or were due (within the margin); bound for every account to be valid again: {bound.TotalSeconds:0.0} s (a cycle and {CycleStart.TotalSeconds} s for its start, {due:N0} at {_day.EtsyRate}/s, a sample)."));
            if (expired == 0)
            {
                _misses.Add($"{f.Name}: no token expired during it, so it proves nothing about recovering from a backlog (make it longer than the margin)");
            }
        }
    }

    public void Gaps()
    {
        var failed = _samples.Count(s => s.Failed);
        var gaps = _figures.Gaps(_day.MeasureFrom, _dayEnd, _day.Cycle).ToList();
        _text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Samples: {_samples.Count:N0}, {failed} of them failed (the database unreadable: gaps, counted as neither available nor not); stretches of more than a cycle without a sample: {gaps.Count}."));
        foreach (var (from, to) in gaps)
        {
            _misses.Add(string.Create(CultureInfo.InvariantCulture, $"no sample from {from:HH:mm:ss.f} to {to:HH:mm:ss.f} ({(to - from).TotalSeconds:0.0} s, more than a cycle)"));
        }
    }

    public void Replicas()
    {
        _text.AppendLine($"Replicas: {string.Join(", ", _day.Replicas.Select(r => $"{r.Name} completed {r.Cycles} cycles"))}.");
        foreach (var r in _day.Replicas)
        {
            if (r.Problem is { } problem)
            {
                _misses.Add(problem);
            }
            else if (r.Cycles < 2)
            {
                _misses.Add($"replica {r.Name} completed {r.Cycles} cycles: it was not seen working");
            }
        }
    }

    // The production path: TLS at the platforms' own names through the proxy, each store at its own host.
    public void Network()
    {
        var tunnels = _day.Tunnels;
        var stores = tunnels.Where(t => t.EndsWith(".myshopify.com:443", StringComparison.Ordinal)).Distinct().Count();
        var refused = tunnels.Count(t => !(t.EndsWith(":443", StringComparison.Ordinal) && PlatformProxy.IsPlatformHost(t[..^4])));
        _text.AppendLine(string.Create(CultureInfo.InvariantCulture,
            $"Network: {tunnels.Count:N0} TLS connections through the proxy, {tunnels.Count(t => t == "api.etsy.com:443"):N0} to api.etsy.com and the rest to {stores:N0} store hosts (one per store); {refused} to any other name."));
        if (stores != O.Stores + O.ExpiringStores)
        {
            _misses.Add($"{stores} store hosts reached, not the {O.Stores + O.ExpiringStores} stores, each at its own name");
        }

        if (refused > 0)
        {
            _misses.Add($"{refused} connections to a name that is not a platform's");
        }
    }

    public void Accounts() => AccountChecks.Write(_day, _fake, _samples, _text, _misses);
}
