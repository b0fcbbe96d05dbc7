using TokenRefresh.Persistence;

namespace TokenRefresh.OAuth;

/// <summary>
/// Where a platform keeps its tokens. The main application's tables share the column names access_token,
/// refresh_token, token_expires_at and updated_at; the key column and types are read from the catalog
/// (<see cref="TableShape"/>). Every name here is a constant of ours, never input.
/// </summary>
/// <param name="KeyKind">How an operator names an account of this table (`tokenrefresh refresh --etsy-user|--shop`).</param>
/// <param name="LookupColumn">The column that <paramref name="KeyKind"/> names; null: the primary key.</param>
/// <param name="LabelColumn">What log lines name an account by, besides its key (a shop domain); null: none.</param>
/// <param name="ActiveColumn">A boolean column that must be true for the account to be refreshed; null: every row.</param>
/// <param name="RefreshExpiryColumn">Where the refresh token's end is kept; null: 90 days after the last success.</param>
internal sealed record TokenTable(
    string Name,
    string KeyKind,
    string? LookupColumn,
    string? LabelColumn,
    string? ActiveColumn,
    string? RefreshExpiryColumn);

/// <summary>
/// One OAuth2 platform whose access tokens are refreshed with a rotating refresh token. A platform
/// supplies only its table, its request (with its response mapping and error classification) and its
/// limits; <see cref="OAuthRefresher"/> does the rest for all of them alike.
/// </summary>
internal interface IRefreshTokenPlatform
{
    /// <summary>The name in logs and summaries, e.g. "Etsy".</summary>
    string Platform { get; }

    /// <summary>The settings that hold the app's credentials, named in the error when the platform refuses them.</summary>
    string CredentialSettings { get; }

    /// <summary>The platform's key in token_refresh_state.</summary>
    string StateKey { get; }

    TokenTable Table { get; }

    /// <summary>Refresh access tokens that expire within this.</summary>
    TimeSpan Margin { get; }

    /// <summary>An access token's documented life: with <see cref="Margin"/>, how often an account is refreshed (the daily-quota estimate).</summary>
    TimeSpan TokenLifetime { get; }

    /// <summary>Taken when the platform omits or garbles expires_in.</summary>
    TimeSpan AssumedLifetime { get; }

    /// <summary>Whose concurrency limit applies ("Etsy", "Shopify").</summary>
    string Group { get; }

    /// <summary>Requests per second for all replicas, with a shared pause after a 429, for platforms whose limits are per API key; null when they are per store.</summary>
    SharedRateLimit? RateLimit { get; }

    /// <summary>
    /// The table as it is now (read from the catalog each cycle), or null when it cannot hold this platform's tokens
    /// and the platform is off (e.g. the optional Shopify expiring-token columns are missing).
    /// </summary>
    /// <exception cref="SchemaException">The table lacks what the platform must have.</exception>
    Task<TableShape?> ShapeAsync(CancellationToken cancellationToken);

    /// <summary>Why an account cannot be called (e.g. a shop domain that is not {name}.myshopify.com), or null.</summary>
    string? Problem(string? label);

    /// <summary>The same as a SQL condition on the row aliased <paramref name="alias"/>, so such accounts are never selected; null: every row may be called.</summary>
    string? CallableSql(string alias);

    /// <summary>Sends the refresh request and classifies the answer.</summary>
    Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken);
}
