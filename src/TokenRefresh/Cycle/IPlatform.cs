using TokenRefresh.Scheduling;

namespace TokenRefresh;

/// <summary>
/// How an operator names one of a platform's accounts on the command line (`tokenrefresh refresh --OPTION VALUE`):
/// the option, what its value is called, what it means, and what is said when no account has that name ({0} is the
/// value). Platforms that share an option share its accounts' names.
/// </summary>
internal sealed record AccountOption(string Name, string HelpName, string Description, string NotFound);

/// <summary>
/// A platform as the cycle knows it, declared once in its folder: <paramref name="Id"/>, the one id its state,
/// re-authorisation signals and status carry; <paramref name="Name"/>, what
/// log lines and summaries call it; <paramref name="Lane"/>, whose share of the calls in flight it takes (its group's
/// cap, its MAX_CONCURRENCY setting, is <paramref name="LaneCap"/>); what success is called; and the command-line
/// option that names its accounts. <paramref name="Optional"/>: the original service did not have it, so a table it
/// lacks stops only itself.
/// </summary>
internal sealed record PlatformInfo(
    string Id, string Name, string Lane, int? LaneCap, Outcome SuccessOutcome, AccountOption Option, bool Optional = false)
{
    /// <summary>Whether the webhook names its accounts' shop domain.</summary>
    public bool LabelIsShopDomain { get; init; }
}

/// <summary>One platform, registered once in its folder; a cycle asks it for its part of that cycle.</summary>
internal interface IPlatform
{
    PlatformInfo Info { get; }

    /// <summary>
    /// Its part of one cycle, made for that cycle alone (all of its state is in it); null when it does not run on this
    /// database (an optional set of columns is missing), which leaves it out of the summary.
    /// </summary>
    /// <exception cref="Persistence.SchemaException">Its table lacks what it needs.</exception>
    Task<IPlatformCycle?> StartCycleAsync(CancellationToken cancellationToken);

    /// <summary>What `tokenrefresh status` counts for it on this database now; null when it does not run here.</summary>
    /// <exception cref="Persistence.SchemaException">Its table lacks what it needs.</exception>
    Task<Status.StatusSource?> StatusSourceAsync(CancellationToken cancellationToken);
}

/// <summary>One platform's part of one cycle: which accounts are due, and how to claim, refresh or validate each.</summary>
internal interface IPlatformCycle
{
    /// <summary>Its rate limit, shared by every replica, or none.</summary>
    IPermits Permits { get; }

    /// <summary>How many accounts are due now (the cycle's "found" line), with the cycle's housekeeping. Throws when the database cannot be reached.</summary>
    Task<int> CountDueAsync(CancellationToken cancellationToken);

    /// <summary>Accounts that need their user although no call failed (a refresh token that ends soon), found by <see cref="CountDueAsync"/>, with why.</summary>
    IReadOnlyList<(DueAccount Account, string Reason)> Announced => [];

    /// <summary>
    /// The next accounts due, most urgent first, at most <paramref name="count"/> (one for each turn the caller holds):
    /// each claimed for this process where the platform claims (in the database and before anything is sent, so that no
    /// other process or replica sends its token meanwhile; no transaction stays open), or with the problem that keeps it
    /// from being called (it takes no turn). None when no account is left this cycle. Accounts another process holds
    /// are its own: they are passed over, not returned.
    /// </summary>
    Task<IReadOnlyList<DueAccount>> NextAsync(int count, DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>The account an operator names by its option's value (`tokenrefresh refresh`), forced; null when it has none such.</summary>
    Task<DueAccount?> FindAccountAsync(string key, CancellationToken cancellationToken);

    /// <summary>
    /// Claims the accounts an operator named, as <see cref="NextAsync"/> claims. Returns, for each account in order, the
    /// claimed account, or a result (skipped) when another process has it.
    /// </summary>
    Task<IReadOnlyList<Claim>> ClaimAsync(IReadOnlyList<DueAccount> accounts, DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// Refreshes or validates one claimed account. <paramref name="deadline"/> is the end of the cycle's budget: work
    /// that must not be dropped (storing a rotated pair) is retried until then. Once a request is sent, the account
    /// finishes whatever <paramref name="claiming"/> says.
    /// </summary>
    Task<AccountResult> ProcessAsync(DueAccount account, DateTimeOffset deadline, CancellationToken claiming);

    /// <summary>
    /// After the platform's last account of the cycle (whatever ended it): lets go of its listing, stores what the cycle learned (the daily quota, the validations
    /// waiting) and returns the results it decided only now (rejections held for the incident guard). Never throws.
    /// </summary>
    Task<IReadOnlyList<(DueAccount Account, AccountResult Result)>> FinishAsync();
}
