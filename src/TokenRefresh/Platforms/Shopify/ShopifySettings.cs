using System.Globalization;
using System.Text.RegularExpressions;
using TokenRefresh.Settings;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>Shopify's settings (SHOPIFY_*): the app's credentials, the Admin API's version and address, and how often to call.</summary>
public sealed partial record ShopifySettings
{
    public static readonly DateOnly DefaultNonExpiringCutoff = new(2027, 1, 1);

    public static readonly Setting ApiKeySetting = new("SHOPIFY_API_KEY", "Shopify app API key") { Required = true };

    public static readonly Setting ApiSecretSetting = new("SHOPIFY_API_SECRET", "Shopify app API secret") { Required = true };

    public static readonly Setting MarginSetting = Setting.Number("SHOPIFY_REFRESH_MARGIN_MINUTES", 10, 0, 1440, "the same for Shopify's expiring offline tokens");

    public static readonly Setting VersionSetting = new("SHOPIFY_API_VERSION", "Admin API version (YYYY-01/04/07/10 or unstable)") { Default = "2026-10" };

    public static readonly Setting BaseUrlSetting = new("SHOPIFY_API_BASE_URL", "URL template; {shop} becomes the row's shop_domain") { Default = "https://{shop}" };

    public static readonly Setting ConcurrencySetting = Setting.Number("SHOPIFY_MAX_CONCURRENCY", null, 1, 256, "Shopify calls in flight at once, within REFRESH_MAX_CONCURRENCY");

    public static readonly Setting CutoffSetting = new("SHOPIFY_NON_EXPIRING_CUTOFF", "the day Shopify stops accepting the app's non-expiring offline tokens, or none")
    {
        Default = "2027-01-01",
    };

    public static readonly Setting ValidateIntervalSetting = Setting.Number("SHOPIFY_VALIDATE_INTERVAL_MINUTES", 0, 0, 10080, "validate each non-expiring token at most this often (0: every cycle)");

    public static readonly IReadOnlyList<Setting> Declared =
        [ApiKeySetting, ApiSecretSetting, MarginSetting, VersionSetting, BaseUrlSetting, ConcurrencySetting, CutoffSetting, ValidateIntervalSetting];

    public required string ApiKey { get; init; }

    public required string ApiSecret { get; init; }

    public TimeSpan RefreshMargin { get; init; } = TimeSpan.FromMinutes(10);

    public string ApiVersion { get; init; } = "2026-10";

    /// <summary>A URL template in which <c>{shop}</c> stands for the store's shop_domain.</summary>
    public string ApiBaseUrl { get; init; } = "https://{shop}";

    /// <summary>SHOPIFY_MAX_CONCURRENCY: Shopify calls (validations and refreshes) in flight at once, within REFRESH_MAX_CONCURRENCY; null: no bound of its own.</summary>
    public int? MaxConcurrency { get; init; }

    /// <summary>Validate each non-expiring Shopify token at most this often; zero: every cycle.</summary>
    public TimeSpan ValidateInterval { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// SHOPIFY_NON_EXPIRING_CUTOFF: the day from which Shopify refuses the app's non-expiring offline tokens (public apps:
    /// 2027-01-01); null (<c>none</c>) for custom and merchant-created apps, which are exempt.
    /// </summary>
    public DateOnly? NonExpiringCutoff { get; init; } = DefaultNonExpiringCutoff;

    // The settings hold the app's secret: never print them.
    public override string ToString() => nameof(ShopifySettings);

    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static ShopifySettings Read(SettingsReader read)
    {
        var version = read.Text(VersionSetting) ?? VersionSetting.Default!;
        if (!ApiVersionPattern().IsMatch(version))
        {
            throw new SettingsException(
                $"SHOPIFY_API_VERSION '{version}' is not a Shopify API version such as 2026-10 (YYYY-01, -04, -07 or -10, or 'unstable').");
        }

        return new ShopifySettings
        {
            ApiKey = read.Required(ApiKeySetting),
            ApiSecret = read.Required(ApiSecretSetting),
            RefreshMargin = TimeSpan.FromMinutes(read.Number(MarginSetting)),
            ApiVersion = version,
            ApiBaseUrl = Template(read.Text(BaseUrlSetting) ?? BaseUrlSetting.Default!),
            MaxConcurrency = read.OptionalNumber(ConcurrencySetting),
            ValidateInterval = TimeSpan.FromMinutes(read.Number(ValidateIntervalSetting)),
            NonExpiringCutoff = Cutoff(read.Text(CutoffSetting)),
        };
    }

    private static string Template(string value)
    {
        if (!value.Contains("{shop}", StringComparison.Ordinal))
        {
            throw new SettingsException($"SHOPIFY_API_BASE_URL '{value}' must contain {{shop}}, which stands for each store's shop_domain.");
        }

        SettingsReader.BaseUrl("SHOPIFY_API_BASE_URL", value.Replace("{shop}", "example.myshopify.com", StringComparison.Ordinal));
        return value.TrimEnd('/');
    }

    private static DateOnly? Cutoff(string? value) => value switch
    {
        null => DefaultNonExpiringCutoff,
        _ when value.Equals("none", StringComparison.OrdinalIgnoreCase) => null,
        _ when DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date) => date,
        _ => throw new SettingsException(
            $"SHOPIFY_NON_EXPIRING_CUTOFF '{value}' is not a date (YYYY-MM-DD, e.g. 2027-01-01) or none (custom and merchant-created apps, which Shopify exempts)."),
    };

    [GeneratedRegex(@"^(\d{4}-(01|04|07|10)|unstable)$")]
    private static partial Regex ApiVersionPattern();
}
