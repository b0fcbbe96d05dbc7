using Dapper;

using TokenRefresh.Persistence;

namespace TokenRefresh.Scheduling;

/// <summary>The reservations in token_refresh_rate, and the database's clock they are placed by.</summary>
internal sealed partial class SharedRateLimit
{
    // The reservation under way, or a new one (a caller's, or a prefetch's with no token): one at a time a process.
    private Task<(bool Reserved, TimeSpan Wait, bool Paused)> Reservation(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        TaskCompletionSource<(bool, TimeSpan, bool)> mine;
        lock (_lock)
        {
            if (_reserving is { IsCompleted: false } underWay)
            {
                return underWay;
            }

            mine = new(TaskCreationOptions.RunContinuationsAsynchronously);
            _reserving = mine.Task;
        }

        _ = CompleteAsync();
        return mine.Task;

        async Task CompleteAsync()
        {
            try
            {
                mine.SetResult(await ReserveAsync(maxWait, cancellationToken));
            }
            catch (OperationCanceledException e)
            {
                mine.SetCanceled(e.CancellationToken);
            }
            catch (Exception e)
            {
                mine.SetException(e);
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
