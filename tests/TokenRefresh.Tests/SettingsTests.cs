using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Tests;

public sealed class SettingsTests
{
    private static readonly Dictionary<string, string?> Valid = new()
    {
        ["DATABASE_URL"] = "postgresql://u:dbpassword123@localhost/app",
        ["ETSY_CLIENT_ID"] = "keystring",
        ["ETSY_CLIENT_SECRET"] = "etsy-secret-value",
        ["SHOPIFY_API_KEY"] = "shopify-key",
        ["SHOPIFY_API_SECRET"] = "shopify-secret-value",
    };

    /// <summary>Every concern's settings, read by one reader, as AddTokenRefresh reads them.</summary>
    private sealed record Loaded(DatabaseSettings Database, CycleSettings Cycle, LoggingSettings Logging, WebhookSettings Webhook, EtsySettings Etsy, ShopifySettings Shopify);

    private static Loaded Load(params (string Key, string? Value)[] changes)
    {
        var values = new Dictionary<string, string?>(Valid);
        foreach (var (key, value) in changes)
        {
            values[key] = value;
        }

        var read = new SettingsReader(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
        return new(DatabaseSettings.Read(read), CycleSettings.Read(read), LoggingSettings.Read(read), WebhookSettings.Read(read), EtsySettings.Read(read),
            ShopifySettings.Read(read));
    }

    [Fact]
    public void Load_OnlyRequiredSettings_UsesTheDocumentedDefaults()
    {
        var o = Load();

        Assert.Equal("0 */3 * * * *", o.Cycle.RefreshSchedule);
        Assert.Equal(TimeSpan.FromMinutes(10), o.Etsy.RefreshMargin);
        Assert.Equal("2026-10", o.Shopify.ApiVersion);
        Assert.Equal(new Uri("https://api.etsy.com/"), o.Etsy.ApiBaseUrl);
        Assert.Equal("https://{shop}", o.Shopify.ApiBaseUrl);
        Assert.Equal(LogLevel.Information, o.Logging.LogLevel);
        Assert.Equal(TimeSpan.FromSeconds(30), o.Cycle.HttpTimeout);
    }

    [Theory]
    [InlineData("DATABASE_URL")]
    [InlineData("ETSY_CLIENT_ID")]
    [InlineData("ETSY_CLIENT_SECRET")]
    [InlineData("SHOPIFY_API_KEY")]
    [InlineData("SHOPIFY_API_SECRET")]
    public void Load_RequiredSettingMissingOrBlank_NamesIt(string key)
    {
        Assert.Equal($"{key} is required but not set.", Assert.Throws<SettingsException>(() => Load((key, null))).Message);
        Assert.Equal($"{key} is required but not set.", Assert.Throws<SettingsException>(() => Load((key, "  "))).Message);
    }

    [Theory]
    // Standard Webhooks' form: the key is the base64 after whsec_.
    [InlineData("whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3", "0123456789abcdef01234567")]
    // Any other secret of 16 characters or more: its UTF-8 bytes.
    [InlineData("a-plain-secret-of-29-characters", "a-plain-secret-of-29-characters")]
    public void Load_WebhookSecret_TheKeyAsStandardWebhooksLibrariesReadIt(string secret, string key)
    {
        var o = Load(("REAUTH_WEBHOOK_URL", "https://app.example.com/hooks"), ("REAUTH_WEBHOOK_SECRET", secret));

        Assert.Equal(System.Text.Encoding.UTF8.GetBytes(key), o.Webhook.Key);
    }

    [Theory]
    [InlineData("whsec_not base64!", "REAUTH_WEBHOOK_SECRET starts with whsec_ but the rest is not base64 of 16 bytes or more.")]
    [InlineData("whsec_c2hvcnQ=", "REAUTH_WEBHOOK_SECRET starts with whsec_ but the rest is not base64 of 16 bytes or more.")]
    [InlineData("too-short", "REAUTH_WEBHOOK_SECRET must be set, at least 16 characters, when REAUTH_WEBHOOK_URL is: it signs each request (webhook-signature).")]
    public void Load_BadWebhookSecret_OneLineNamingIt_WithoutTheValue(string secret, string message)
    {
        var e = Assert.Throws<SettingsException>(() => Load(("REAUTH_WEBHOOK_URL", "https://app.example.com/hooks"), ("REAUTH_WEBHOOK_SECRET", secret)));

        Assert.Equal(message, e.Message);
    }

    [Theory]
    [InlineData("ETSY_REFRESH_MARGIN_MINUTES", "ten")]
    [InlineData("ETSY_REFRESH_MARGIN_MINUTES", "-1")]
    [InlineData("ETSY_REFRESH_MARGIN_MINUTES", "100000")]
    [InlineData("HTTP_TIMEOUT_SECONDS", "0")]
    [InlineData("LOG_LEVEL", "VERBOSE")]
    [InlineData("REFRESH_SCHEDULE", "every 3 minutes")]
    [InlineData("REFRESH_SCHEDULE", "0 */3 * * *  * *")]
    [InlineData("SHOPIFY_API_VERSION", "2026-11")]
    [InlineData("SHOPIFY_API_VERSION", "latest")]
    [InlineData("ETSY_API_BASE_URL", "api.etsy.com")]
    [InlineData("ETSY_API_BASE_URL", "ftp://api.etsy.com")]
    [InlineData("ETSY_API_BASE_URL", "http://api.etsy.com")]
    [InlineData("ETSY_API_BASE_URL", "http://10.0.0.5:9000")]
    [InlineData("SHOPIFY_API_BASE_URL", "https://proxy.example.com")]
    [InlineData("SHOPIFY_API_BASE_URL", "http://{shop}")]
    [InlineData("ETSY_MAX_CONCURRENCY", "0")]
    [InlineData("SHOPIFY_MAX_CONCURRENCY", "many")]
    [InlineData("ETSY_QUOTA_WARN_PERCENT", "150")]
    [InlineData("SHOPIFY_NON_EXPIRING_CUTOFF", "2027-13-01")]
    [InlineData("SHOPIFY_NON_EXPIRING_CUTOFF", "01/01/2027")]
    [InlineData("SHOPIFY_NON_EXPIRING_CUTOFF", "never")]
    public void Load_MalformedSetting_OneLineNamingIt(string key, string value)
    {
        var e = Assert.Throws<SettingsException>(() => Load((key, value)));

        Assert.StartsWith(key, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData(null, "2027-01-01")]
    [InlineData("2026-12-20", "2026-12-20")]
    [InlineData("none", null)]
    [InlineData("NONE", null)]
    public void Load_ShopifyNonExpiringCutoff_ShopifysDayByDefault_NoneForExemptApps(string? value, string? expected)
    {
        var o = Load(("SHOPIFY_NON_EXPIRING_CUTOFF", value));

        Assert.Equal(expected, o.Shopify.NonExpiringCutoff?.ToString("yyyy-MM-dd", null));
    }

    [Fact]
    public void Load_PerPlatformConcurrency_BoundsItsGroupWithinTheTotal_AndTheLeaseOutlastsARequestAndItsWrite()
    {
        var o = Load(("REFRESH_MAX_CONCURRENCY", "32"), ("SHOPIFY_MAX_CONCURRENCY", "8"));

        Assert.Equal((32, null, 8), (o.Cycle.MaxConcurrency, o.Etsy.MaxConcurrency, o.Shopify.MaxConcurrency));
        Assert.Equal(50, o.Etsy.QuotaWarnPercent);
        // The 120 s budget (a claimed call may wait for a new permit until it ends), 30 s of HTTP timeout, and the 30 s in
        // which the pair's write is retried at least.
        Assert.Equal(TimeSpan.FromSeconds(180), o.Cycle.LeaseLength);
        Assert.True(o.Cycle.LeaseLength >= o.Cycle.UnknownOutcomeWait);
    }

    [Fact]
    public void Load_AnyError_NeverEchoesSecrets()
    {
        var e = Assert.Throws<SettingsException>(() => Load(("DATABASE_URL", "postgresql://u:dbpassword123@h/d?x=1")));

        foreach (var secret in new[] { "dbpassword123", "etsy-secret-value", "shopify-secret-value" })
        {
            Assert.DoesNotContain(secret, e.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("http://127.0.0.1:9000")]
    [InlineData("http://localhost:9000/etsy")]
    [InlineData("http://[::1]:9000")]
    [InlineData("https://etsy-proxy.internal.example")]
    public void Load_LoopbackHttpOrAnyHttps_IsAccepted(string url)
    {
        var o = Load(("ETSY_API_BASE_URL", url));

        Assert.EndsWith("/", o.Etsy.ApiBaseUrl.AbsoluteUri, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_LocalShopifyTemplate_IsAcceptedAndKeepsThePlaceholder()
    {
        var o = Load(("SHOPIFY_API_BASE_URL", "http://127.0.0.1:9000/{shop}/"));

        Assert.Equal("http://127.0.0.1:9000/{shop}", o.Shopify.ApiBaseUrl);
    }

    [Theory]
    [InlineData("DEBUG", LogLevel.Debug)]
    [InlineData("debug", LogLevel.Debug)]
    [InlineData("info", LogLevel.Information)]
    [InlineData("INFO", LogLevel.Information)]
    [InlineData("Warning", LogLevel.Warning)]
    [InlineData("WARN", LogLevel.Warning)]
    [InlineData("ERROR", LogLevel.Error)]
    [InlineData("CRITICAL", LogLevel.Critical)]
    [InlineData("fatal", LogLevel.Critical)]
    public void Load_LogLevel_MapsTheOriginalNames(string value, LogLevel expected) =>
        Assert.Equal(expected, Load(("LOG_LEVEL", value)).Logging.LogLevel);

    [Theory]
    [InlineData("0 */5 * * * *", 5)]
    [InlineData("*/15 * * * *", 15)]
    public void Load_Schedule_AcceptsSixAndFiveFieldNcrontab(string schedule, int minutesApart)
    {
        var o = Load(("REFRESH_SCHEDULE", schedule));
        var first = o.Cycle.Schedule.GetNextOccurrence(new DateTime(2026, 1, 1, 0, 0, 30, DateTimeKind.Utc));

        Assert.Equal(TimeSpan.FromMinutes(minutesApart), o.Cycle.Schedule.GetNextOccurrence(first) - first);
    }

    [Fact]
    public void Load_RefreshIntervalMinutesAlone_IsTheOriginalsCadence()
    {
        var o = Load(("REFRESH_INTERVAL_MINUTES", "7"));

        Assert.Equal(TimeSpan.FromMinutes(7), o.Cycle.RefreshInterval);
        Assert.False(o.Cycle.RefreshScheduleSet);
    }

    [Theory]
    [InlineData("3", "0 */3 * * * *")]
    [InlineData("60", "0 0 * * * *")]
    [InlineData("5", "*/5 * * * *")]
    public void Load_RefreshIntervalAgreeingWithTheSchedule_IsAccepted(string minutes, string schedule)
    {
        var o = Load(("REFRESH_INTERVAL_MINUTES", minutes), ("REFRESH_SCHEDULE", schedule));

        Assert.True(o.Cycle.RefreshScheduleSet);
        Assert.Equal(schedule, o.Cycle.RefreshSchedule);
    }

    [Theory]
    [InlineData("5", "0 */3 * * * *", "REFRESH_INTERVAL_MINUTES=5 and REFRESH_SCHEDULE '0 */3 * * * *' (which runs every 3 minutes) disagree; set only one of them.")]
    [InlineData("7", "0 */7 * * * *", "REFRESH_INTERVAL_MINUTES=7 and REFRESH_SCHEDULE '0 */7 * * * *' (which does not run at a fixed interval) disagree; set only one of them.")]
    public void Load_RefreshIntervalDisagreeingWithTheSchedule_StopsWithOneLineNamingBoth(string minutes, string schedule, string message) =>
        Assert.Equal(message, Assert.Throws<SettingsException>(() => Load(("REFRESH_INTERVAL_MINUTES", minutes), ("REFRESH_SCHEDULE", schedule))).Message);

    [Theory]
    [InlineData("0")]
    [InlineData("three")]
    [InlineData("1441")]
    public void Load_RefreshIntervalMalformed_NamesIt(string minutes) =>
        Assert.StartsWith("REFRESH_INTERVAL_MINUTES '", Assert.Throws<SettingsException>(() => Load(("REFRESH_INTERVAL_MINUTES", minutes))).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData(null, "REFRESH_SCHEDULE is not set: the Functions host runs the timer from it; set it, e.g. '0 */3 * * * *' (every 3 minutes).")]
    [InlineData("15", "REFRESH_INTERVAL_MINUTES=15 is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: set REFRESH_SCHEDULE='0 */15 * * * *' instead.")]
    [InlineData("120", "REFRESH_INTERVAL_MINUTES=120 is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: set REFRESH_SCHEDULE='0 0 */2 * * *' instead.")]
    [InlineData("7", "REFRESH_INTERVAL_MINUTES=7 is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: no schedule runs exactly every 7 minutes; set REFRESH_SCHEDULE to one that divides the hour, e.g. '0 */5 * * * *'.")]
    public void RequireFunctionsSchedule_NoSchedule_SaysWhatToSet(string? minutes, string message) =>
        Assert.Equal(message, Assert.Throws<SettingsException>(() => Load(("REFRESH_INTERVAL_MINUTES", minutes)).Cycle.RequireFunctionsSchedule()).Message);

    [Fact]
    public void RequireFunctionsSchedule_ScheduleSet_Passes() => Load(("REFRESH_SCHEDULE", "0 */3 * * * *")).Cycle.RequireFunctionsSchedule();

    [Fact]
    public void Load_DatabaseAuthEntra_TakesAUrlWithAUserAndNoPassword()
    {
        var o = Load(("DATABASE_AUTH", "entra"), ("DATABASE_URL", "postgresql://my-identity@server.postgres.database.azure.com/app?sslmode=verify-full"));

        Assert.True(o.Database.EntraAuthentication);
        Assert.False(Load().Database.EntraAuthentication);
    }

    [Theory]
    [InlineData("entra", "postgresql://u:dbpassword123@localhost/app", "DATABASE_URL holds a password, but DATABASE_AUTH=entra takes the password from Microsoft Entra ID: remove it from the URL.")]
    [InlineData("entra", "postgresql://localhost/app", "DATABASE_URL names no user: with DATABASE_AUTH=entra it is the Entra principal's name in PostgreSQL (e.g. the managed identity's).")]
    [InlineData("kerberos", "postgresql://u@localhost/app", "DATABASE_AUTH 'kerberos' is not one of password (the default) or entra (a Microsoft Entra ID token, for Azure Database for PostgreSQL).")]
    public void Load_DatabaseAuthMisconfigured_OneLineSaysWhat(string auth, string url, string message)
    {
        var e = Assert.Throws<SettingsException>(() => Load(("DATABASE_AUTH", auth), ("DATABASE_URL", url)));

        Assert.Equal(message, e.Message);
        Assert.DoesNotContain("dbpassword123", e.Message, StringComparison.Ordinal);
    }
}
