using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Etsy;

/// <summary>Etsy's settings (ETSY_*): the app's credentials, where Etsy is, how early to refresh, and its limits.</summary>
public sealed record EtsySettings
{
    public static readonly Setting ClientIdSetting = new("ETSY_CLIENT_ID", "Etsy app keystring") { Required = true };

    public static readonly Setting ClientSecretSetting = new("ETSY_CLIENT_SECRET", "Etsy shared secret (sent only in x-api-key)") { Required = true };

    public static readonly Setting MarginSetting = Setting.Number("ETSY_REFRESH_MARGIN_MINUTES", 10, 0, 1440, "refresh Etsy tokens expiring within this many minutes");

    public static readonly Setting BaseUrlSetting = new("ETSY_API_BASE_URL", "Etsy API root; plain http only for loopback hosts") { Default = "https://api.etsy.com" };

    public static readonly Setting ConcurrencySetting = Setting.Number("ETSY_MAX_CONCURRENCY", null, 1, 256, "Etsy calls in flight at once, within REFRESH_MAX_CONCURRENCY");

    public static readonly Setting RateSetting = Setting.Number("ETSY_MAX_REQUESTS_PER_SECOND", 10, 1, 100_000, "Etsy calls per second for all replicas together");

    public static readonly Setting QuotaWarnSetting = Setting.Number("ETSY_QUOTA_WARN_PERCENT", 50, 1, 100, "warn when the refreshes alone would use more than this share of Etsy's daily quota");

    public static readonly IReadOnlyList<Setting> Declared =
        [ClientIdSetting, ClientSecretSetting, MarginSetting, BaseUrlSetting, ConcurrencySetting, RateSetting, QuotaWarnSetting];

    public required string ClientId { get; init; }

    public required string ClientSecret { get; init; }

    public TimeSpan RefreshMargin { get; init; } = TimeSpan.FromMinutes(10);

    public Uri ApiBaseUrl { get; init; } = new("https://api.etsy.com/");

    /// <summary>ETSY_MAX_CONCURRENCY: Etsy calls in flight at once, within REFRESH_MAX_CONCURRENCY; null: no bound of its own.</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>Bound on Etsy calls per second, for every replica together (shared through the database).</summary>
    public int MaxRequestsPerSecond { get; init; } = 10;

    /// <summary>Warn when the refreshes alone would use more than this share of Etsy's daily quota (the rest is the app's own calls).</summary>
    public int QuotaWarnPercent { get; init; } = 50;

    // The settings hold the shared secret: never print them.
    public override string ToString() => nameof(EtsySettings);

    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static EtsySettings Read(SettingsReader read) => new()
    {
        ClientId = read.Required(ClientIdSetting),
        ClientSecret = read.Required(ClientSecretSetting),
        RefreshMargin = TimeSpan.FromMinutes(read.Number(MarginSetting)),
        ApiBaseUrl = read.BaseUrl(BaseUrlSetting),
        MaxConcurrency = read.OptionalNumber(ConcurrencySetting),
        MaxRequestsPerSecond = read.Number(RateSetting),
        QuotaWarnPercent = read.Number(QuotaWarnSetting),
    };
}
