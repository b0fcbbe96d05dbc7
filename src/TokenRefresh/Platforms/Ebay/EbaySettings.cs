using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Ebay;

/// <summary>eBay's settings (EBAY_*): eBay is refreshed only when EBAY_CLIENT_ID is set.</summary>
public sealed record EbaySettings
{
    public static readonly Setting ClientIdSetting = new("EBAY_CLIENT_ID", "eBay app's App ID: eBay's user tokens are refreshed only when it is set");

    public static readonly Setting ClientSecretSetting = new("EBAY_CLIENT_SECRET", "eBay app's Cert ID (sent only in the Authorization header)") { RequiredWith = "EBAY_CLIENT_ID" };

    public static readonly Setting ScopesSetting = new("EBAY_SCOPES", "the scopes the users consented to, space-separated, sent as scope") { RequiredWith = "EBAY_CLIENT_ID" };

    public static readonly Setting BaseUrlSetting = new("EBAY_API_BASE_URL", "eBay API root (https://api.sandbox.ebay.com for the sandbox); plain http only for loopback hosts")
    {
        Default = "https://api.ebay.com",
    };

    public static readonly Setting MarginSetting = Setting.Number("EBAY_REFRESH_MARGIN_MINUTES", 10, 0, 1440, "refresh eBay access tokens expiring within this many minutes");

    public static readonly Setting AheadSetting = Setting.Number("EBAY_REAUTH_AHEAD_DAYS", 30, 1, 365, "ask the user to reconnect this many days before the refresh token ends");

    public static readonly IReadOnlyList<Setting> Declared = [ClientIdSetting, ClientSecretSetting, ScopesSetting, BaseUrlSetting, MarginSetting, AheadSetting];

    public required string ClientId { get; init; }

    public required string ClientSecret { get; init; }

    public required string Scopes { get; init; }

    public Uri ApiBaseUrl { get; init; } = new("https://api.ebay.com/");

    public TimeSpan RefreshMargin { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>How long before its end a refresh token is announced (refresh_token_ending).</summary>
    public TimeSpan ReauthAhead { get; init; } = TimeSpan.FromDays(30);

    // The settings hold the app's secret: never print them.
    public override string ToString() => nameof(EbaySettings);

    /// <summary>eBay's settings, or null when EBAY_CLIENT_ID is not set (eBay is off).</summary>
    /// <exception cref="SettingsException">EBAY_CLIENT_ID is set and another setting is missing or malformed.</exception>
    public static EbaySettings? Read(SettingsReader read)
    {
        if (read.Text(ClientIdSetting) is not { } clientId)
        {
            return null;
        }

        string With(Setting setting) => read.Text(setting) ?? throw new SettingsException($"{setting.Name} is required when EBAY_CLIENT_ID is set.");
        return new EbaySettings
        {
            ClientId = clientId,
            ClientSecret = With(ClientSecretSetting),
            Scopes = string.Join(' ', With(ScopesSetting).Split(' ', StringSplitOptions.RemoveEmptyEntries)),
            ApiBaseUrl = read.BaseUrl(BaseUrlSetting),
            RefreshMargin = TimeSpan.FromMinutes(read.Number(MarginSetting)),
            ReauthAhead = TimeSpan.FromDays(read.Number(AheadSetting)),
        };
    }
}
