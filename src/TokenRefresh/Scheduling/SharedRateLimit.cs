using Dapper;
using Npgsql;

using TokenRefresh.Persistence;

namespace TokenRefresh.Scheduling;

/// <summary>
/// A platform's requests-per-second limit for all replicas together (a platform's limits may be per API key, not per
/// process), kept in token_refresh_rate: a process reserves the next moments calls may start, 1/rate apart and after
/// the ones before, by the database's clock, which every replica shares; so no one-second window ever holds more
/// than the rate. A 429's Retry-After moves them for every replica. A reservation takes as many moments as fit in
/// the grace a permit has (<see cref="Permit.Grace"/>; one at 10 a second, more at higher rates), so a
/// process never holds a moment it cannot use at once, and one that passed unused is let go.
/// The daily quota that the platform's last answer gave rides along with the next reservation.
/// </summary>
internal sealed class SharedRateLimit(NpgsqlDataSource db, TimeProvider time, string platform, int perSecond, TimeProvider? realTime = null) : IPermits
{
    // Waits are real time, as the database's clock is (the service's clock may be a test's).
    private readonly TimeProvider _clock = realTime ?? TimeProvider.System;

    /// <summary>How far ahead a moment may be reserved: another replica's 429 pause reaches a moment reserved before it.</summary>
    public static readonly TimeSpan Lookahead = TimeSpan.FromMilliseconds(250);

    private readonly TimeSpan _interval = TimeSpan.FromSeconds(1.0 / perSecond);
    private readonly int _perReservation = Math.Clamp((int)(perSecond * Permit.Grace.TotalSeconds), 1, 64);
    private readonly Lock _lock = new();
    private readonly Queue<DateTimeOffset> _moments = new();
    private Quota? _quota;
    private long _pausedUntilTicks;

    // The database's clock against this process's, from the quickest round trip lately: a moment is placed by it, not
    // by when the answer arrived (a slow answer, as a process's first is while its code compiles, would put the moment
    // late, beside the next one another replica holds).
    private (TimeSpan Offset, TimeSpan RoundTrip, DateTimeOffset At)? _databaseClock;

    private volatile bool _rateBound;

    public string Platform => platform;

    public bool RateBound => _rateBound;

    public TimeProvider Clock => _clock;

    public int PerSecond => perSecond;

    /// <summary>The platform's daily quota as an answer gave it.</summary>
    public sealed record Quota(int PerDay, int Remaining, DateTimeOffset SeenAt);

    /// <summary>
    /// A moment reserved earlier that has come (or comes within <paramref name="ahead"/>) and is not past its grace, if
    /// there is one (no wait, no database): how long ago it was, for the call's own check that it leaves within the
    /// grace of its moment (negative: how long its call waits for it).
    /// </summary>
    public TimeSpan? TryTake(TimeSpan ahead)
    {
        var now = _clock.GetUtcNow();
        lock (_lock)
        {
            while (_moments.TryPeek(out var moment) && (now - moment > Permit.Grace || Paused(now)))
            {
                _moments.Dequeue(); // passed unused, or reserved before this process's own 429: let go
            }

            return _moments.TryPeek(out var next) && next <= now + ahead && _moments.Dequeue() == next ? now - next : null;
        }
    }

    /// <summary>
    /// Waits until a call may start: a reserved moment, after any pause. Once it may: no reason, and how long ago the
    /// moment was; else why not, without a reservation, when the wait would end after <paramref name="deadline"/> (the
    /// call is then left for a later cycle).
    /// </summary>
    public async Task<(string? NotNow, TimeSpan Late)> WaitAsync(DateTimeOffset deadline, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (TryTake(TimeSpan.Zero) is { } late)
            {
                return (null, late);
            }

            DateTimeOffset? upcoming;
            lock (_lock)
            {
                upcoming = _moments.TryPeek(out var m) ? m : null;
            }

            if (upcoming is null)
            {
                var maxWait = deadline - time.GetUtcNow();
                var (reserved, wait, paused) = await ReserveAsync(maxWait < Lookahead ? maxWait : Lookahead, cancellationToken);
                // The first moment lay ahead: calls wait for the rate (or a pause), not for the database's answer.
                _rateBound = wait > TimeSpan.Zero;
                if (!reserved)
                {
                    // Within the last Lookahead of the budget, the database's no is the budget's: asking again would only spin.
                    if (wait > maxWait || maxWait <= Lookahead)
                    {
                        return (paused ? "asked to pause (429 Retry-After) past this cycle's budget" : "cycle budget spent", default);
                    }

                    // Too far ahead to hold (or another replica took those moments first): asked again once it is near.
                    if (wait > Lookahead)
                    {
                        await Task.Delay(wait - Lookahead, _clock, cancellationToken);
                    }

                    continue;
                }

                lock (_lock)
                {
                    // Another caller of this process (a claimed call whose permit went stale) may have taken them already.
                    upcoming = _moments.TryPeek(out var m) ? m : null;
                }

                if (upcoming is null)
                {
                    continue;
                }
            }

            // Woken late (a busy machine), a moment is let go by TryTake, rather than put a call beside the next one's.
            if (upcoming.Value - _clock.GetUtcNow() is { Ticks: > 0 } delay)
            {
                await Task.Delay(delay, _clock, cancellationToken);
            }
        }
    }

    private bool Paused(DateTimeOffset now) => new DateTimeOffset(Interlocked.Read(ref _pausedUntilTicks), TimeSpan.Zero) > now;

    /// <summary>A 429's Retry-After: no replica's next call starts before it has passed.</summary>
    public async Task PauseAsync(TimeSpan retryAfter)
    {
        var until = (_clock.GetUtcNow() + retryAfter).UtcTicks;
        long seen;
        while ((seen = Interlocked.Read(ref _pausedUntilTicks)) < until && Interlocked.CompareExchange(ref _pausedUntilTicks, until, seen) != seen)
        {
        }

        await using var connection = await db.OpenConnectionAsync();
        await connection.ExecuteAsync(new CommandDefinition("""
            INSERT INTO token_refresh_rate AS r (platform, next_at, paused_until)
            VALUES (@Platform, clock_timestamp(), clock_timestamp() + make_interval(secs => @Seconds))
            ON CONFLICT (platform) DO UPDATE
            SET paused_until = GREATEST(r.paused_until, EXCLUDED.paused_until)
            """, new { Platform = platform, Seconds = retryAfter.TotalSeconds }));
    }

    /// <summary>
    /// The daily quota an answer gave; stored with the next reservation, and at the end of the cycle. Answers that
    /// arrive together may be handled out of order: within a minute, the lowest figure left is the latest.
    /// </summary>
    public void SawQuota(int perDay, int remaining, DateTimeOffset at)
    {
        lock (_lock)
        {
            if (_quota is not { } seen || perDay != seen.PerDay || remaining < seen.Remaining || at - seen.SeenAt > TimeSpan.FromMinutes(1))
            {
                _quota = new Quota(perDay, remaining, at);
            }
        }
    }

    /// <summary>Stores the last quota this process saw, unless a replica stored a later one.</summary>
    public async Task StoreQuotaAsync()
    {
        if (LastQuota is not { } quota)
        {
            return;
        }

        await using var connection = await db.OpenConnectionAsync();
        await connection.ExecuteAsync("""
            UPDATE token_refresh_rate
            SET quota_per_day = @PerDay, remaining_today = @Remaining, quota_seen_at = @SeenAt
            WHERE platform = @Platform AND (quota_seen_at IS NULL OR quota_seen_at <= @SeenAt)
            """, new { Platform = platform, quota.PerDay, quota.Remaining, quota.SeenAt });
    }

    /// <summary>The last quota this process saw, if any.</summary>
    public Quota? LastQuota
    {
        get
        {
            lock (_lock)
            {
                return _quota;
            }
        }
    }

    // Reserves the next moments (queued here), unless the first lies further than maxWait ahead; returns whether it did,
    // how long until the first, and whether a pause set it.
    private async Task<(bool Reserved, TimeSpan Wait, bool Paused)> ReserveAsync(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        const string sql = """
            WITH current AS (
                SELECT GREATEST(r.next_at, r.paused_until, clock_timestamp()) AS slot, r.paused_until > clock_timestamp() AS paused
                FROM (SELECT 1) one LEFT JOIN token_refresh_rate r ON r.platform = @Platform),
            reserved AS (
                INSERT INTO token_refresh_rate AS r (platform, next_at, quota_per_day, remaining_today, quota_seen_at)
                VALUES (@Platform, clock_timestamp() + make_interval(secs => @Interval * @Count), @PerDay, @Remaining, @SeenAt)
                ON CONFLICT (platform) DO UPDATE SET
                    next_at = GREATEST(r.next_at, r.paused_until, clock_timestamp()) + make_interval(secs => @Interval * @Count),
                    quota_per_day = CASE WHEN EXCLUDED.quota_seen_at >= r.quota_seen_at OR r.quota_seen_at IS NULL
                                         THEN COALESCE(EXCLUDED.quota_per_day, r.quota_per_day) ELSE r.quota_per_day END,
                    remaining_today = CASE WHEN EXCLUDED.quota_seen_at >= r.quota_seen_at OR r.quota_seen_at IS NULL
                                           THEN COALESCE(EXCLUDED.remaining_today, r.remaining_today) ELSE r.remaining_today END,
                    quota_seen_at = GREATEST(EXCLUDED.quota_seen_at, r.quota_seen_at)
                WHERE GREATEST(r.next_at, r.paused_until, clock_timestamp()) <= clock_timestamp() + make_interval(secs => @MaxWait)
                RETURNING r.next_at - make_interval(secs => @Interval * @Count) AS slot)
            SELECT EXISTS (SELECT 1 FROM reserved) AS Reserved,
                   extract(epoch FROM COALESCE((SELECT slot FROM reserved), c.slot, clock_timestamp()))::float8 AS Slot,
                   extract(epoch FROM clock_timestamp())::float8 AS Now,
                   COALESCE(c.paused, false) AS Paused
            FROM current c
            """;
        Quota? quota;
        lock (_lock)
        {
            quota = _quota;
        }

        var parameters = new
        {
            Platform = platform, Interval = _interval.TotalSeconds, Count = _perReservation, MaxWait = Math.Max(0, maxWait.TotalSeconds),
            quota?.PerDay, quota?.Remaining, SeenAt = quota?.SeenAt,
        };
        // Retried through a dropped connection or a restart, as the cycle's other reads are: a lost reservation only costs a moment.
        var (reserved, slot, paused) = await DatabaseRetry.ReadAsync(_clock, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            if (ClockOffset is null)
            {
                // The first reservation: a few bare readings of the clock, so that the first moments are placed right too.
                for (var i = 0; i < 3; i++)
                {
                    var sent = _clock.GetUtcNow();
                    SawClock(sent, await connection.ExecuteScalarAsync<double>(new CommandDefinition("SELECT extract(epoch FROM clock_timestamp())::float8", cancellationToken: ct)));
                }
            }

            var asked = _clock.GetUtcNow();
            var row = await connection.ReadRowAsync<(bool Reserved, double Slot, double Now, bool Paused)>(new CommandDefinition(sql, parameters, cancellationToken: ct));
            SawClock(asked, row.Now);
            return (row.Reserved, row.Slot, row.Paused);
        }, cancellationToken);
        var at = DateTimeOffset.UnixEpoch + TimeSpan.FromSeconds(slot) + ClockOffset!.Value;
        var first = at - _clock.GetUtcNow() is { Ticks: > 0 } wait ? wait : TimeSpan.Zero;
        if (reserved)
        {
            lock (_lock)
            {
                for (var i = 0; i < _perReservation; i++)
                {
                    _moments.Enqueue(at + _interval * i);
                }
            }
        }

        return (reserved, first, paused);
    }

    // A reading of the database's clock taken between sent and now: it read it about halfway. Kept if its round trip
    // was the quickest yet, or the one kept is a minute old (clocks drift, and may be set).
    private void SawClock(DateTimeOffset sent, double databaseNow)
    {
        var now = _clock.GetUtcNow();
        var roundTrip = now - sent;
        lock (_lock)
        {
            if (_databaseClock is not { } kept || roundTrip <= kept.RoundTrip || now - kept.At > TimeSpan.FromMinutes(1))
            {
                _databaseClock = (sent + roundTrip / 2 - (DateTimeOffset.UnixEpoch + TimeSpan.FromSeconds(databaseNow)), roundTrip, now);
            }
        }
    }

    /// <summary>The round trip of the reading <see cref="ClockOffset"/> comes from: the offset is right to within half of it.</summary>
    internal TimeSpan? ClockRoundTrip
    {
        get
        {
            lock (_lock)
            {
                return _databaseClock?.RoundTrip;
            }
        }
    }

    /// <summary>How far this process's clock is ahead of the database's, as best seen; null before the first reading.</summary>
    internal TimeSpan? ClockOffset
    {
        get
        {
            lock (_lock)
            {
                return _databaseClock?.Offset;
            }
        }
    }
}
