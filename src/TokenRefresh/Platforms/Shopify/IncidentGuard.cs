namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// The incident guard: a cycle deactivates its rejected stores only if they are at most <see cref="Limit"/>, the larger
/// of <see cref="Floor"/> and <see cref="Share"/> of the stores Shopify answered this cycle (not of those due: a
/// backlog would raise the limit past a wave that its budget only let begin), and the cycle before was no wave (a wave's tail,
/// which may fall under the limit, is held too). Real uninstalls come a few a day; hundreds of 401s in one cycle are
/// Shopify's incident, a wrong base URL or API version, or revoked app tokens, and switching those stores off would
/// stop the main application for all of them. The floor lets a small shop list (or a handful of real uninstalls) go through.
/// </summary>
internal sealed class IncidentGuard(IncidentGuard.Memory memory)
{
    public const int Floor = 5;
    public const double Share = 0.02;

    private int _confirmed;
    private int _answered;

    public int Limit => Math.Max(Floor, (int)Math.Ceiling(Volatile.Read(ref _answered) * Share));

    /// <summary>More stores rejected this cycle than the limit: a wave, and none of them is deactivated.</summary>
    public bool Tripped => Volatile.Read(ref _confirmed) > Limit;

    /// <summary>Counts a store Shopify answered with its token accepted.</summary>
    public void Accepted() => Interlocked.Increment(ref _answered);

    /// <summary>Counts one confirmed rejection (an answer too).</summary>
    public void Rejected()
    {
        Interlocked.Increment(ref _answered);
        Interlocked.Increment(ref _confirmed);
    }

    /// <summary>
    /// What becomes of this cycle's rejected stores; asked once, when the cycle's validations are done. Also a wave when
    /// <paramref name="othersRejected"/>: stores whose check had passed were rejected too (<see cref="ControlStores"/>).
    /// </summary>
    public Verdict Decide(bool othersRejected = false)
    {
        var wave = Tripped || othersRejected;
        return memory.Note(wave) ? (wave ? Verdict.Wave : Verdict.AfterWave) : Verdict.Deactivate;
    }

    public enum Verdict
    {
        /// <summary>A few stores' own rejections: they are switched off.</summary>
        Deactivate,

        /// <summary>A wave: none is switched off, this cycle or the next.</summary>
        Wave,

        /// <summary>The cycle after a wave: its tail is held too.</summary>
        AfterWave,
    }

    /// <summary>Whether the cycle before was a wave, kept across the process's cycles; each replica judges for itself.</summary>
    internal sealed class Memory
    {
        private readonly Lock _lock = new();
        private int _cyclesSinceWave = int.MaxValue;

        /// <summary>Notes whether this cycle's rejections were a wave; true when this cycle's or the one before's were.</summary>
        public bool Note(bool wave)
        {
            lock (_lock)
            {
                var held = wave || _cyclesSinceWave == 0;
                _cyclesSinceWave = wave ? 0 : _cyclesSinceWave == int.MaxValue ? int.MaxValue : _cyclesSinceWave + 1;
                return held;
            }
        }
    }
}
