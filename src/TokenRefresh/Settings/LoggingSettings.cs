using Microsoft.Extensions.Logging;

namespace TokenRefresh.Settings;

/// <summary>What the service says, and where its logs and metrics go.</summary>
public sealed record LoggingSettings
{
    public static readonly Setting LevelSetting = new("LOG_LEVEL", "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL), in any case") { Default = "INFO" };

    public static readonly Setting FormatSetting = new("LOG_FORMAT", "the CLI's output: text, one line per event, or json, one object per event") { Default = "text" };

    public static readonly Setting AccountSuccessSetting = new("LOG_ACCOUNT_SUCCESS", "each account's success at Information (true) or at Debug (false; the Function app's default)") { Default = "true" };

    public static readonly Setting ServiceNameSetting = new("OTEL_SERVICE_NAME", "the one name traces and metrics carry; the Function app's name in Azure") { Default = "tokenrefresh" };

    public static readonly Setting OtlpEndpointSetting = new("OTEL_EXPORTER_OTLP_ENDPOINT", "metrics are exported over OTLP there");

    public static readonly Setting ApplicationInsightsSetting = new("APPLICATIONINSIGHTS_CONNECTION_STRING", "Function app: logs and metrics go to Application Insights");

    public static readonly IReadOnlyList<Setting> Declared =
        [LevelSetting, FormatSetting, AccountSuccessSetting, ServiceNameSetting, OtlpEndpointSetting, ApplicationInsightsSetting];

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>LOG_FORMAT=json: the CLI writes one JSON object per event (with its scopes), for Railway, Kubernetes and Loki.</summary>
    public bool JsonLogs { get; init; }

    /// <summary>
    /// LOG_ACCOUNT_SUCCESS: each account's success is a line at Information (true) or at Debug (false). The CLI says
    /// it, as the original did; the Function app does not by default, since Application Insights bills per trace.
    /// </summary>
    public bool LogAccountSuccess { get; init; } = true;

    /// <exception cref="SettingsException">A setting is malformed.</exception>
    public static LoggingSettings Read(SettingsReader read) => new()
    {
        // The names Python's logging takes (the original service's LOG_LEVEL), in any case, and .NET's own.
        LogLevel = read.Choice(LevelSetting, new Dictionary<string, LogLevel>
        {
            ["info"] = LogLevel.Information, ["information"] = LogLevel.Information, ["debug"] = LogLevel.Debug, ["trace"] = LogLevel.Trace,
            ["warning"] = LogLevel.Warning, ["warn"] = LogLevel.Warning, ["error"] = LogLevel.Error, ["critical"] = LogLevel.Critical, ["fatal"] = LogLevel.Critical,
        }, "DEBUG, INFO, WARNING (or WARN), ERROR, CRITICAL (or FATAL)"),
        JsonLogs = read.Choice(FormatSetting, new Dictionary<string, bool> { ["text"] = false, ["json"] = true },
            "text (the default: one readable line per event) or json (one JSON object per event)"),
        LogAccountSuccess = read.Choice(AccountSuccessSetting, new Dictionary<string, bool>
        {
            ["true"] = true, ["1"] = true, ["yes"] = true, ["false"] = false, ["0"] = false, ["no"] = false,
        }, "true (each account's success at Information) or false (at Debug)"),
    };
}
