using System.Globalization;
using System.Net;
using Microsoft.Extensions.Configuration;

namespace TokenRefresh.Settings;

/// <summary>A setting is missing or malformed. The message names the setting and never quotes a secret.</summary>
public sealed class SettingsException(string message) : Exception(message)
{
    /// <summary>The one line every host prints on standard error before it stops.</summary>
    public string Line => $"Configuration error: {Message}";
}

/// <summary>
/// One environment variable, declared once beside the settings it belongs to: its name, its default as the README gives
/// it, whether it is required, its range, and what it means. The README's table lists the same (a test checks).
/// </summary>
public sealed record Setting(string Name, string Meaning)
{
    /// <summary>The default as people read it (the README's "default" column); null: none.</summary>
    public string? Default { get; init; }

    public bool Required { get; init; }

    /// <summary>Required only together with another setting (the README says "with ..."); null: not.</summary>
    public string? RequiredWith { get; init; }

    public int? Min { get; init; }

    public int? Max { get; init; }

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Setting Number(string name, int? @default, int min, int max, string meaning) =>
        new(name, meaning) { Default = @default?.ToString(CultureInfo.InvariantCulture), Min = min, Max = max };
}

/// <summary>Reads the declared settings from configuration (environment variables, a .env file, local.settings.json): no other.</summary>
public sealed class SettingsReader(IConfiguration configuration)
{
    /// <summary>The value, trimmed; null when it is not set or blank.</summary>
    public string? Text(Setting setting)
    {
        var value = configuration[setting.Name];
        return string.IsNullOrWhiteSpace(value) ? null : value.Trim();
    }

    public bool IsSet(Setting setting) => Text(setting) is not null;

    /// <exception cref="SettingsException">It is not set.</exception>
    public string Required(Setting setting) => Text(setting) ?? throw new SettingsException($"{setting.Name} is required but not set.");

    /// <summary>A whole number in the setting's range; its default when not set.</summary>
    public int Number(Setting setting) =>
        OptionalNumber(setting) ?? int.Parse(setting.Default ?? throw new InvalidOperationException($"{setting.Name} has no default."), CultureInfo.InvariantCulture);

    /// <summary>A whole number in the setting's range; null when not set.</summary>
    public int? OptionalNumber(Setting setting)
    {
        if (Text(setting) is not { } value)
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number >= setting.Min && number <= setting.Max
            ? number
            : throw new SettingsException($"{setting.Name} '{value}' must be a whole number from {setting.Min} to {setting.Max}.");
    }

    /// <summary>One of <paramref name="choices"/> (in any case), or its default; the message lists them.</summary>
    public T Choice<T>(Setting setting, IReadOnlyDictionary<string, T> choices, string explained)
    {
        var value = Text(setting) ?? setting.Default!;
        return choices.TryGetValue(value.ToLowerInvariant(), out var choice)
            ? choice
            : throw new SettingsException($"{setting.Name} '{value}' is not one of {explained}.");
    }

    /// <summary>An absolute http(s) URL without a query, plain http only for loopback hosts, ending with a slash.</summary>
    public Uri BaseUrl(Setting setting) => BaseUrl(setting.Name, Text(setting) ?? setting.Default!);

    internal static Uri BaseUrl(string name, string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http") || uri.Query.Length > 0)
        {
            throw new SettingsException($"{name} '{value}' must be an absolute https:// URL without a query.");
        }

        if (uri.Scheme == "http" && !IsLoopback(uri))
        {
            throw new SettingsException($"{name} '{value}' uses plain http, which is allowed only for loopback hosts (127.0.0.1, ::1, localhost).");
        }

        // A trailing slash makes relative request paths append to the base path instead of replacing it.
        return uri.AbsoluteUri.EndsWith('/') ? uri : new Uri(uri.AbsoluteUri + "/");
    }

    public static bool IsLoopback(Uri uri) =>
        uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
}
