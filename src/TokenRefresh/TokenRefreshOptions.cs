using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using NCrontab;
using TokenRefresh.Persistence;

namespace TokenRefresh;

/// <summary>A setting is missing or malformed. The message names the setting and never quotes a secret.</summary>
public sealed class SettingsException(string message) : Exception(message)
{
    /// <summary>The one line every host prints on standard error before it stops.</summary>
    public string Line => $"Configuration error: {Message}";
}

/// <summary>
/// Every setting, read from the original service's environment variable names and validated at once,
/// so that a bad value stops the program at start with one line that names it.
/// </summary>
public sealed partial record TokenRefreshOptions
{
    // The options hold the credentials: never print them.
    public override string ToString() => nameof(TokenRefreshOptions);

    public const string DefaultSchedule = "0 */3 * * * *";

    /// <summary>Every setting the service reads (OTEL_* and APPLICATIONINSIGHTS_CONNECTION_STRING besides): Load reads no other.</summary>
    public static readonly IReadOnlyList<string> SettingNames =
    [
        "DATABASE_URL", "ETSY_CLIENT_ID", "ETSY_CLIENT_SECRET", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "LOG_LEVEL", "REFRESH_SCHEDULE",
        "REFRESH_INTERVAL_MINUTES", "ETSY_REFRESH_MARGIN_MINUTES", "SHOPIFY_REFRESH_MARGIN_MINUTES", "SHOPIFY_API_VERSION", "ETSY_API_BASE_URL",
        "SHOPIFY_API_BASE_URL", "HTTP_TIMEOUT_SECONDS", "CYCLE_BUDGET_SECONDS", "ETSY_MAX_REQUESTS_PER_SECOND", "REFRESH_MAX_CONCURRENCY",
        "SHOPIFY_VALIDATE_INTERVAL_MINUTES", "DATABASE_AUTH", "ETSY_MAX_CONCURRENCY", "SHOPIFY_MAX_CONCURRENCY", "ETSY_QUOTA_WARN_PERCENT",
        "LOG_FORMAT", "LOG_ACCOUNT_SUCCESS", "HEARTBEAT_FILE", "REAUTH_WEBHOOK_URL", "REAUTH_WEBHOOK_SECRET", "SHOPIFY_NON_EXPIRING_CUTOFF",
    ];

    public required string ConnectionString { get; init; }

    /// <summary>DATABASE_AUTH=entra: the password is a Microsoft Entra ID token (Azure Database for PostgreSQL), not in DATABASE_URL.</summary>
    public bool EntraAuthentication { get; init; }
    public required string EtsyClientId { get; init; }
    public required string EtsyClientSecret { get; init; }
    public required string ShopifyApiKey { get; init; }
    public required string ShopifyApiSecret { get; init; }
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>LOG_FORMAT=json: the CLI writes one JSON object per event (with its scopes), for Railway, Kubernetes and Loki.</summary>
    public bool JsonLogs { get; init; }

    /// <summary>
    /// LOG_ACCOUNT_SUCCESS: each account's success is a line at Information (true) or at Debug (false). The CLI says
    /// it, as the original did; the Function app does not by default, since Application Insights bills per trace.
    /// </summary>
    public bool LogAccountSuccess { get; init; } = true;

    /// <summary>HEARTBEAT_FILE: the file `run` touches after each cycle that ran (the image's HEALTHCHECK reads its age).</summary>
    public string? HeartbeatFile { get; init; }

    /// <summary>REAUTH_WEBHOOK_URL: where an account that needs its user again is posted (signed with REAUTH_WEBHOOK_SECRET).</summary>
    public Uri? ReauthWebhookUrl { get; init; }

    /// <summary>REAUTH_WEBHOOK_SECRET: the HMAC-SHA256 key of the webhook's signature; a secret.</summary>
    public string? ReauthWebhookSecret { get; init; }
    public string RefreshSchedule { get; init; } = DefaultSchedule;

    /// <summary>Whether REFRESH_SCHEDULE was set (the Functions host needs it; the CLI has a default).</summary>
    public bool RefreshScheduleSet { get; init; }

    /// <summary>REFRESH_INTERVAL_MINUTES, the original service's setting: a cycle at start, then every N minutes. Null when not set.</summary>
    public TimeSpan? RefreshInterval { get; init; }
    public TimeSpan EtsyRefreshMargin { get; init; } = TimeSpan.FromMinutes(10);
    public TimeSpan ShopifyRefreshMargin { get; init; } = TimeSpan.FromMinutes(10);
    public string ShopifyApiVersion { get; init; } = "2026-10";
    public Uri EtsyApiBaseUrl { get; init; } = new("https://api.etsy.com/");

    /// <summary>A URL template in which <c>{shop}</c> stands for the store's shop_domain.</summary>
    public string ShopifyApiBaseUrl { get; init; } = "https://{shop}";

    public TimeSpan HttpTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>After this, a cycle claims no new account; in-flight ones finish. Well inside the 3-minute schedule.</summary>
    public TimeSpan CycleBudget { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Calls in flight at once in a cycle, all platforms together, shared fairly; the connection pool is sized to match.</summary>
    public int MaxConcurrency { get; init; } = 16;

    /// <summary>ETSY_MAX_CONCURRENCY: Etsy calls in flight at once, within MaxConcurrency; null: no bound of its own.</summary>
    public int? EtsyMaxConcurrency { get; init; }

    /// <summary>SHOPIFY_MAX_CONCURRENCY: Shopify calls (validations and refreshes) in flight at once, within MaxConcurrency; null: no bound of its own.</summary>
    public int? ShopifyMaxConcurrency { get; init; }

    /// <summary>The bounds of their own, by refresher group ("Etsy", "Shopify").</summary>
    public IReadOnlyDictionary<string, int> GroupConcurrency => new Dictionary<string, int>
    {
        ["Etsy"] = EtsyMaxConcurrency ?? MaxConcurrency,
        ["Shopify"] = ShopifyMaxConcurrency ?? MaxConcurrency,
    };

    /// <summary>Warn when the refreshes alone would use more than this share of Etsy's daily quota (the rest is the app's own calls).</summary>
    public int EtsyQuotaWarnPercent { get; init; } = 50;

    /// <summary>Validate each non-expiring Shopify token at most this often; zero: every cycle.</summary>
    public TimeSpan ShopifyValidateInterval { get; init; } = TimeSpan.Zero;

    /// <summary>
    /// SHOPIFY_NON_EXPIRING_CUTOFF: the day from which Shopify refuses the app's non-expiring offline tokens (public apps:
    /// 2027-01-01); null (<c>none</c>) for custom and merchant-created apps, which are exempt.
    /// </summary>
    public DateOnly? ShopifyNonExpiringCutoff { get; init; } = DefaultNonExpiringCutoff;

    public static readonly DateOnly DefaultNonExpiringCutoff = new(2027, 1, 1);

    /// <summary>Bound on Etsy calls per second, for every replica together (shared through the database).</summary>
    public int EtsyMaxRequestsPerSecond { get; init; } = 10;

    /// <summary>The shortest wait before an account whose last call had an unknown outcome is called again, twice the HTTP timeout (60 s by default): no retry races a request still in flight.</summary>
    public TimeSpan UnknownOutcomeWait => HttpTimeout * 2;

    /// <summary>
    /// How long a claim's lease lasts: longer than anything its holder may still do with the token. A claimed call may
    /// wait for a new permit until the cycle's budget ends, then take the HTTP timeout, and then its pair's write is
    /// retried for at least 30 s; so the budget, the HTTP timeout and 30 s, and never less than the wait after an
    /// unknown outcome. A lease in force always means a request that may still be answered, or a pair that may still
    /// be stored.
    /// </summary>
    public TimeSpan LeaseLength
    {
        get
        {
            var covers = CycleBudget + HttpTimeout + DatabaseRetry.MinimumWindow;
            return covers > UnknownOutcomeWait ? covers : UnknownOutcomeWait;
        }
    }

    /// <summary>How long a failed cycle waits before it is tried again (Function retry and CLI <c>run</c>).</summary>
    public static readonly TimeSpan CycleRetryDelay = TimeSpan.FromSeconds(60);

    public CrontabSchedule Schedule => ParseSchedule(RefreshSchedule)!;

    /// <exception cref="SettingsException">The first missing or malformed setting.</exception>
    public static TokenRefreshOptions Load(IConfiguration configuration)
    {
        string? Get(string key)
        {
            // The list above is what the tests scrub from a process's environment: it must name every setting read here.
            if (!SettingNames.Contains(key))
            {
                throw new InvalidOperationException($"{key} is read but missing from TokenRefreshOptions.SettingNames.");
            }

            var value = configuration[key];
            return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
        }

        string Required(string key) => Get(key) ?? throw new SettingsException($"{key} is required but not set.");

        var databaseUrl = Required("DATABASE_URL");
        var schedule = Get("REFRESH_SCHEDULE") ?? DefaultSchedule;
        if (ParseSchedule(schedule) is not { } parsed)
        {
            throw new SettingsException(
                $"REFRESH_SCHEDULE '{schedule}' is not an NCRONTAB expression (six fields with seconds, e.g. '{DefaultSchedule}').");
        }

        TimeSpan? interval = Get("REFRESH_INTERVAL_MINUTES") is null ? null : TimeSpan.FromMinutes(WholeNumber(Get, "REFRESH_INTERVAL_MINUTES", 3, 1, 1440));
        if (interval is { } every && Get("REFRESH_SCHEDULE") is not null && Cadence(parsed) != every)
        {
            var runs = Cadence(parsed) is { } cadence ? $"runs every {cadence.TotalMinutes:0.##} minutes" : "does not run at a fixed interval";
            throw new SettingsException(
                $"REFRESH_INTERVAL_MINUTES={every.TotalMinutes} and REFRESH_SCHEDULE '{schedule}' (which {runs}) disagree; set only one of them.");
        }

        var version = Get("SHOPIFY_API_VERSION") ?? "2026-10";
        if (!ApiVersionPattern().IsMatch(version))
        {
            throw new SettingsException(
                $"SHOPIFY_API_VERSION '{version}' is not a Shopify API version such as 2026-10 (YYYY-01, -04, -07 or -10, or 'unstable').");
        }

        var database = DatabaseUrl.Parse(databaseUrl);
        var entra = Get("DATABASE_AUTH")?.ToLowerInvariant() switch
        {
            null or "password" => false,
            "entra" => true,
            _ => throw new SettingsException($"DATABASE_AUTH '{Get("DATABASE_AUTH")}' is not one of password (the default) or entra (a Microsoft Entra ID token, for Azure Database for PostgreSQL)."),
        };
        if (entra && !string.IsNullOrEmpty(database.Password))
        {
            throw new SettingsException("DATABASE_URL holds a password, but DATABASE_AUTH=entra takes the password from Microsoft Entra ID: remove it from the URL.");
        }

        if (entra && string.IsNullOrEmpty(database.Username))
        {
            throw new SettingsException("DATABASE_URL names no user: with DATABASE_AUTH=entra it is the Entra principal's name in PostgreSQL (e.g. the managed identity's).");
        }

        var webhook = Get("REAUTH_WEBHOOK_URL") is { } hook ? WebhookUrl(hook) : null;
        if (webhook is not null && Get("REAUTH_WEBHOOK_SECRET") is not { Length: >= 16 })
        {
            throw new SettingsException("REAUTH_WEBHOOK_SECRET must be set, at least 16 characters, when REAUTH_WEBHOOK_URL is: it signs each request (X-TokenRefresh-Signature).");
        }

        return new TokenRefreshOptions
        {
            ConnectionString = database.ConnectionString,
            EntraAuthentication = entra,
            EtsyClientId = Required("ETSY_CLIENT_ID"),
            EtsyClientSecret = Required("ETSY_CLIENT_SECRET"),
            ShopifyApiKey = Required("SHOPIFY_API_KEY"),
            ShopifyApiSecret = Required("SHOPIFY_API_SECRET"),
            LogLevel = ParseLogLevel(Get("LOG_LEVEL")),
            JsonLogs = Get("LOG_FORMAT")?.ToLowerInvariant() switch
            {
                null or "text" => false,
                "json" => true,
                _ => throw new SettingsException($"LOG_FORMAT '{Get("LOG_FORMAT")}' is not one of text (the default: one readable line per event) or json (one JSON object per event)."),
            },
            LogAccountSuccess = Get("LOG_ACCOUNT_SUCCESS")?.ToLowerInvariant() switch
            {
                null => true,
                "true" or "1" or "yes" => true,
                "false" or "0" or "no" => false,
                _ => throw new SettingsException($"LOG_ACCOUNT_SUCCESS '{Get("LOG_ACCOUNT_SUCCESS")}' is not true (each account's success at Information) or false (at Debug)."),
            },
            HeartbeatFile = Get("HEARTBEAT_FILE"),
            ReauthWebhookUrl = webhook,
            ReauthWebhookSecret = webhook is null ? null : Get("REAUTH_WEBHOOK_SECRET"),
            RefreshSchedule = schedule,
            RefreshScheduleSet = Get("REFRESH_SCHEDULE") is not null,
            RefreshInterval = interval,
            EtsyRefreshMargin = TimeSpan.FromMinutes(WholeNumber(Get, "ETSY_REFRESH_MARGIN_MINUTES", 10, 0, 1440)),
            ShopifyRefreshMargin = TimeSpan.FromMinutes(WholeNumber(Get, "SHOPIFY_REFRESH_MARGIN_MINUTES", 10, 0, 1440)),
            ShopifyApiVersion = version,
            EtsyApiBaseUrl = BaseUrl("ETSY_API_BASE_URL", Get("ETSY_API_BASE_URL") ?? "https://api.etsy.com"),
            ShopifyApiBaseUrl = ShopifyTemplate(Get("SHOPIFY_API_BASE_URL") ?? "https://{shop}"),
            HttpTimeout = TimeSpan.FromSeconds(WholeNumber(Get, "HTTP_TIMEOUT_SECONDS", 30, 1, 300)),
            CycleBudget = TimeSpan.FromSeconds(WholeNumber(Get, "CYCLE_BUDGET_SECONDS", 120, 5, 3600)),
            EtsyMaxRequestsPerSecond = WholeNumber(Get, "ETSY_MAX_REQUESTS_PER_SECOND", 10, 1, 100000),
            MaxConcurrency = WholeNumber(Get, "REFRESH_MAX_CONCURRENCY", 16, 1, 256),
            EtsyMaxConcurrency = Get("ETSY_MAX_CONCURRENCY") is null ? null : WholeNumber(Get, "ETSY_MAX_CONCURRENCY", 16, 1, 256),
            ShopifyMaxConcurrency = Get("SHOPIFY_MAX_CONCURRENCY") is null ? null : WholeNumber(Get, "SHOPIFY_MAX_CONCURRENCY", 16, 1, 256),
            EtsyQuotaWarnPercent = WholeNumber(Get, "ETSY_QUOTA_WARN_PERCENT", 50, 1, 100),
            ShopifyValidateInterval = TimeSpan.FromMinutes(WholeNumber(Get, "SHOPIFY_VALIDATE_INTERVAL_MINUTES", 0, 0, 10080)),
            ShopifyNonExpiringCutoff = Cutoff(Get("SHOPIFY_NON_EXPIRING_CUTOFF")),
        };
    }

    /// <summary>
    /// Stops an Azure Functions worker whose schedule the host could not follow: the host, not the worker, runs the
    /// timer, from REFRESH_SCHEDULE alone (REFRESH_INTERVAL_MINUTES, the original's setting, means nothing to it).
    /// </summary>
    /// <exception cref="SettingsException">REFRESH_SCHEDULE is not set; the message says what to set.</exception>
    public void RequireFunctionsSchedule()
    {
        if (RefreshScheduleSet)
        {
            return;
        }

        throw new SettingsException(RefreshInterval is { } every
            ? $"REFRESH_INTERVAL_MINUTES={every.TotalMinutes} is not read by the Functions host, which runs the timer from REFRESH_SCHEDULE: {Suggest(every)}."
            : $"REFRESH_SCHEDULE is not set: the Functions host runs the timer from it; set it, e.g. '{DefaultSchedule}' (every 3 minutes).");
    }

    private static string Suggest(TimeSpan every) => (int)every.TotalMinutes switch
    {
        var n when 60 % n == 0 => $"set REFRESH_SCHEDULE='0 */{n} * * * *' instead",
        var n when n % 60 == 0 && 24 % (n / 60) == 0 => $"set REFRESH_SCHEDULE='0 0 */{n / 60} * * *' instead",
        var n => $"no schedule runs exactly every {n} minutes; set REFRESH_SCHEDULE to one that divides the hour, e.g. '0 */5 * * * *'",
    };

    /// <summary>The fixed interval between the schedule's runs over a day, or null when they are not evenly spaced.</summary>
    private static TimeSpan? Cadence(CrontabSchedule schedule)
    {
        var start = new DateTime(2026, 1, 5, 0, 0, 0, DateTimeKind.Utc);
        var runs = schedule.GetNextOccurrences(start.AddTicks(-1), start.AddDays(1)).ToList();
        if (runs.Count == 0)
        {
            return null;
        }

        var gaps = runs.Zip(runs.Skip(1), (a, b) => b - a).Append(start.AddDays(1) - runs[^1] + (runs[0] - start)).Distinct().ToList();
        return gaps.Count == 1 ? gaps[0] : null;
    }

    private static CrontabSchedule? ParseSchedule(string expression)
    {
        var fields = expression.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
        return fields is 5 or 6
            ? CrontabSchedule.TryParse(expression, new CrontabSchedule.ParseOptions { IncludingSeconds = fields == 6 })
            : null;
    }

    // The names Python's logging takes (the original service's LOG_LEVEL), in any case, and .NET's own.
    private static LogLevel ParseLogLevel(string? value) => value?.ToUpperInvariant() switch
    {
        null or "INFO" or "INFORMATION" => LogLevel.Information,
        "DEBUG" => LogLevel.Debug,
        "TRACE" => LogLevel.Trace,
        "WARNING" or "WARN" => LogLevel.Warning,
        "ERROR" => LogLevel.Error,
        "CRITICAL" or "FATAL" => LogLevel.Critical,
        _ => throw new SettingsException($"LOG_LEVEL '{value}' is not one of DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL)."),
    };

    private static int WholeNumber(Func<string, string?> get, string key, int fallback, int min, int max)
    {
        var value = get(key);
        if (value is null)
        {
            return fallback;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number >= min && number <= max
            ? number
            : throw new SettingsException($"{key} '{value}' must be a whole number from {min} to {max}.");
    }

    private static DateOnly? Cutoff(string? value) => value switch
    {
        null => DefaultNonExpiringCutoff,
        _ when value.Equals("none", StringComparison.OrdinalIgnoreCase) => null,
        _ when DateOnly.TryParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var date) => date,
        _ => throw new SettingsException(
            $"SHOPIFY_NON_EXPIRING_CUTOFF '{value}' is not a date (YYYY-MM-DD, e.g. {DefaultNonExpiringCutoff:yyyy-MM-dd}) or none (custom and merchant-created apps, which Shopify exempts)."),
    };

    // The URL is not repeated: a webhook's address often carries its own key.
    private static Uri WebhookUrl(string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) && (uri.Scheme == "https" || (uri.Scheme == "http" && IsLoopback(uri)))
            ? uri
            : throw new SettingsException("REAUTH_WEBHOOK_URL must be an absolute https:// URL (plain http only for loopback hosts).");

    private static Uri BaseUrl(string key, string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http") || uri.Query.Length > 0)
        {
            throw new SettingsException($"{key} '{value}' must be an absolute https:// URL without a query.");
        }

        if (uri.Scheme == "http" && !IsLoopback(uri))
        {
            throw new SettingsException($"{key} '{value}' uses plain http, which is allowed only for loopback hosts (127.0.0.1, ::1, localhost).");
        }

        // A trailing slash makes relative request paths append to the base path instead of replacing it.
        return uri.AbsoluteUri.EndsWith('/') ? uri : new Uri(uri.AbsoluteUri + "/");
    }

    private static string ShopifyTemplate(string value)
    {
        if (!value.Contains("{shop}", StringComparison.Ordinal))
        {
            throw new SettingsException($"SHOPIFY_API_BASE_URL '{value}' must contain {{shop}}, which stands for each store's shop_domain.");
        }

        BaseUrl("SHOPIFY_API_BASE_URL", value.Replace("{shop}", "example.myshopify.com", StringComparison.Ordinal));
        return value.TrimEnd('/');
    }

    private static bool IsLoopback(Uri uri) =>
        uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));

    [GeneratedRegex(@"^(\d{4}-(01|04|07|10)|unstable)$")]
    private static partial Regex ApiVersionPattern();
}
