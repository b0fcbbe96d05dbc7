namespace TokenRefresh.OAuth;

/// <summary>
/// Where a platform keeps its tokens. The main application's tables share the column names
/// access_token, refresh_token, token_expires_at and updated_at; the rest differs per table.
/// Every fragment is a constant of ours, never input.
/// </summary>
internal sealed record TokenTable(
    string Name,
    string KeyKind,
    string KeyColumn,
    string ActiveFilter,
    string? LabelColumn,
    string? RefreshExpiryColumn,
    string RefreshTokenExpirySql);

/// <summary>
/// One OAuth2 platform whose access tokens are refreshed with a rotating refresh token. A platform
/// supplies only its table, its request (with its response mapping and error classification) and its
/// limits; <see cref="OAuthRefresher"/> does the rest for all of them alike.
/// </summary>
internal interface IRefreshTokenPlatform
{
    /// <summary>The name in logs and summaries, e.g. "Etsy".</summary>
    string Platform { get; }

    /// <summary>The platform's key in token_refresh_state.</summary>
    string StateKey { get; }

    TokenTable Table { get; }

    /// <summary>Refresh access tokens that expire within this.</summary>
    TimeSpan Margin { get; }

    /// <summary>Taken when the platform omits or garbles expires_in.</summary>
    TimeSpan AssumedLifetime { get; }

    /// <summary>A process-wide pause after a 429, for platforms whose limits are per API key; null when they are per account.</summary>
    RateGate? Gate { get; }

    /// <summary>False when the main application's table cannot hold this platform's tokens (columns missing).</summary>
    Task<bool> IsEnabledAsync(CancellationToken cancellationToken);

    /// <summary>Why an account cannot be called (e.g. an invalid shop domain), or null.</summary>
    string? Problem(string? label);

    /// <summary>Sends the refresh request and classifies the answer.</summary>
    Task<CallResult<TokenPair>> RefreshAsync(string? label, string refreshToken, CancellationToken cancellationToken);
}
