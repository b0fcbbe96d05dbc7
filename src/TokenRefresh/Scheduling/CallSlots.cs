namespace TokenRefresh.Scheduling;

/// <summary>
/// The calls in flight of one cycle (REFRESH_MAX_CONCURRENCY in all), shared fairly between the platforms' lanes:
/// a free slot goes to the waiting lane with the fewest calls in flight, and a lane at or above its fair share
/// (the slots divided among the lanes still claiming) leaves one slot free for every other such lane below its
/// share, so a slow platform never holds every slot while a fast or rate-limited one waits for a turn. Idle
/// slots are used by whoever waits: no lane is held to its share while nobody else wants the rest. A group of
/// lanes may also have its own cap (a platform's own MAX_CONCURRENCY setting). An urgent lane (its tokens have
/// expired) goes first, and shares only with the other urgent lanes; a routine lane beside it keeps one slot, unless
/// the urgent lane is waiting for a rate-limit permit.
/// </summary>
internal sealed class CallSlots(int total, IReadOnlyDictionary<string, int> groupCaps)
{
    private readonly Lock _lock = new();
    private readonly List<Lane> _lanes = [];
    private readonly Dictionary<string, int> _groupInFlight = [];
    private int _inFlight;
    private long _order;

    /// <summary>A platform's place in the sharing, for as long as it claims accounts (dispose when it stops claiming).</summary>
    public Lane Join(string group)
    {
        lock (_lock)
        {
            var lane = new Lane(this, group);
            _lanes.Add(lane);
            _groupInFlight.TryAdd(group, 0);
            return lane;
        }
    }

    private int Cap(string group) => groupCaps.TryGetValue(group, out var cap) ? Math.Min(cap, total) : total;

    private int Share(Lane lane) =>
        Math.Min(Cap(lane.Group), Math.Max(1, total / Math.Max(1, lane.Urgent ? _lanes.Count(l => l.Urgent) : _lanes.Count)));

    // Lane l's claim on the free slots when another takes one: none while the taker is below its share, else l's share;
    // beside an urgent taker, a routine lane keeps its first slot only, so that it is slowed, never stopped.
    private int Reserve(Lane l, Lane taker) => taker.Urgent && !l.Urgent ? 1 : taker.InFlight < Share(taker) ? 0 : Share(l);

    // Whether the lane may take a free slot: one stays free for every other lane below what it may claim; and while an
    // urgent lane wants slots (it is not waiting for a permit), a routine lane has one at most.
    private bool MayTake(Lane lane) =>
        _groupInFlight[lane.Group] < Cap(lane.Group)
        && (lane.Urgent || lane.InFlight == 0 || !_lanes.Any(l => l.Urgent && !l.AwaitingPermit))
        && total - _inFlight - 1 >= _lanes.Count(l => l != lane && l.InFlight < Reserve(l, lane) && _groupInFlight[l.Group] < Cap(l.Group));

    // Under the lock: hands free slots to waiting lanes, urgent ones first, then the fewest in flight.
    private void Dispatch()
    {
        while (_inFlight < total)
        {
            Lane? next = null;
            foreach (var lane in _lanes)
            {
                if (lane.Waiter is not null && (next is null || Before(lane, next)) && MayTake(lane))
                {
                    next = lane;
                }
            }

            if (next is null)
            {
                return;
            }

            var waiter = next.Waiter!;
            next.Waiter = null;
            next.InFlight++;
            _groupInFlight[next.Group]++;
            _inFlight++;
            waiter.TrySetResult();
        }
    }

    // Urgent first; then the fewest in flight; then the longest waiting.
    private static bool Before(Lane a, Lane b) =>
        a.Urgent != b.Urgent ? a.Urgent : a.InFlight != b.InFlight ? a.InFlight < b.InFlight : a.WaitingSince < b.WaitingSince;

    public sealed class Lane : IDisposable
    {
        private readonly CallSlots _slots;

        internal Lane(CallSlots slots, string group)
        {
            _slots = slots;
            Group = group;
        }

        internal string Group { get; }

        internal int InFlight { get; set; }

        internal TaskCompletionSource? Waiter { get; set; }

        internal long WaitingSince { get; private set; }

        internal bool Urgent { get; private set; }

        /// <summary>Set while the lane waits for the rate (a permit whose moment lies ahead): meanwhile its slots are free for anyone.</summary>
        public bool AwaitingPermit { get; set; }

        /// <summary>Whether this lane's next calls are for tokens that have already expired: those go before routine calls.</summary>
        public void MarkUrgent(bool urgent)
        {
            lock (_slots._lock)
            {
                Urgent = urgent;
                _slots.Dispatch();
            }
        }

        /// <summary>A slot if one is free for this lane now, without waiting; false otherwise.</summary>
        public bool TryEnter(out Slot slot)
        {
            lock (_slots._lock)
            {
                var granted = new TaskCompletionSource();
                Waiter = granted;
                WaitingSince = ++_slots._order;
                _slots.Dispatch();
                if (granted.Task.IsCompleted)
                {
                    slot = new Slot(this);
                    return true;
                }

                Waiter = null;
                slot = null!;
                return false;
            }
        }

        /// <summary>Waits for a slot; one waiter per lane at a time. Dispose the result when the call is done.</summary>
        public async Task<Slot> EnterAsync(CancellationToken cancellationToken)
        {
            var granted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_slots._lock)
            {
                Waiter = granted;
                WaitingSince = ++_slots._order;
                _slots.Dispatch();
            }

            try
            {
                await granted.Task.WaitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                lock (_slots._lock)
                {
                    if (Waiter == granted)
                    {
                        Waiter = null;
                        throw;
                    }
                }

                // Granted just as it was cancelled: give the slot back.
                new Slot(this).Dispose();
                throw;
            }

            return new Slot(this);
        }

        internal void Release()
        {
            lock (_slots._lock)
            {
                InFlight--;
                _slots._groupInFlight[Group]--;
                _slots._inFlight--;
                _slots.Dispatch();
            }
        }

        /// <summary>The lane claims no more: its share goes to the others.</summary>
        public void Dispose()
        {
            lock (_slots._lock)
            {
                _slots._lanes.Remove(this);
                _slots.Dispatch();
            }
        }
    }

    /// <summary>One call's slot; disposing it frees the slot once.</summary>
    public sealed class Slot(Lane lane) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                lane.Release();
            }
        }
    }
}
