using TokenRefresh.Persistence;
using TokenRefresh.Platforms;
using TokenRefresh.Scheduling;

namespace TokenRefresh.OAuth;

/// <summary>
/// Where a platform keeps its tokens. The main application's tables share the column names access_token,
/// refresh_token, token_expires_at and updated_at; the key column and types are read from the catalog
/// (<see cref="TableShape"/>). Every name here is a constant of ours, never input.
/// </summary>
/// <param name="LookupColumn">The column an operator names an account by (`tokenrefresh refresh`); null: the primary key.</param>
/// <param name="LabelColumn">What log lines name an account by, besides its key (a shop domain); null: none.</param>
/// <param name="ActiveColumn">A boolean column that must be true for the account to be refreshed; null: every row.</param>
internal sealed record TokenTable(string Name, string? LookupColumn, string? LabelColumn, string? ActiveColumn);

/// <summary>
/// How a platform's refresh token ends. One that <paramref name="Rotates"/> comes new with every refresh, and lives <paramref name="Lifetime"/> from then: kept in <paramref name="EndColumn"/> when the table has
/// one, else counted from the last success. One that does not rotate ends on a day the main application stores
/// in <paramref name="EndColumn"/>, and is announced <paramref name="AnnouncedAhead"/> before it.
/// </summary>
internal sealed record RefreshTokenLife(bool Rotates, TimeSpan Lifetime, string? EndColumn, TimeSpan? AnnouncedAhead = null)
{
    /// <summary>Whether the end is the main application's to store (a fixed end), not renewed by each refresh.</summary>
    public bool FixedEnd => !Rotates && EndColumn is not null;
}

/// <summary>
/// A platform's daily quota per API key: the setting that says when to warn (<paramref name="WarnSetting"/>) and its value, and the header that gives the quota.
/// </summary>
internal sealed record DailyQuotaWarning(string WarnSetting, int WarnPercent, QuotaHeaders Headers);

/// <summary>
/// One OAuth2 platform whose access tokens are refreshed with a refresh token: a small declarative adapter. It supplies
/// its description (table, lifetimes, limits), its request with the response mapping and error classification, and
/// the platform registration line; <see cref="OAuthPlatform"/> does the rest for all of them alike.
/// </summary>
internal interface IRefreshTokenPlatform
{
    PlatformInfo Info { get; }

    TokenTable Table { get; }

    RefreshTokenLife RefreshToken { get; }

    /// <summary>Refresh access tokens that expire within this.</summary>
    TimeSpan Margin { get; }

    /// <summary>An access token's documented life: with <see cref="Margin"/>, how often an account is refreshed (the daily-quota estimate).</summary>
    TimeSpan TokenLifetime { get; }

    /// <summary>Taken when the platform omits or garbles expires_in.</summary>
    TimeSpan AssumedLifetime { get; }

    /// <summary>The settings that hold the app's credentials, named in the error when the platform refuses them.</summary>
    string CredentialSettings { get; }

    /// <summary>Requests per second for all replicas, with a shared pause after a 429, for platforms whose limits are per API key; null when they are per store or account.</summary>
    SharedRateLimit? RateLimit { get; }

    /// <summary>The daily quota per API key and when to warn about it; null when the platform has none.</summary>
    DailyQuotaWarning? DailyQuota { get; }

    /// <summary>
    /// The table as it is now (read from the catalog each cycle), or null when it cannot hold this platform's tokens
    /// and the platform is off (its optional columns are missing). <paramref name="readOnly"/>:
    /// only what the platform reads must be there and readable (for `status`).
    /// </summary>
    /// <exception cref="SchemaException">The table lacks what the platform must have.</exception>
    Task<TableShape?> ShapeAsync(bool readOnly, CancellationToken cancellationToken);

    /// <summary>Why an account cannot be called (a label it must not be sent to), or null.</summary>
    string? Problem(string? label);

    /// <summary>The same as a SQL condition on the row aliased <paramref name="alias"/>, so such accounts are never selected; null: every row may be called.</summary>
    string? CallableSql(string alias);

    /// <summary>Sends the refresh request and classifies the answer.</summary>
    Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken);
}
