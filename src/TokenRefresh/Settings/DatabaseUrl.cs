using Npgsql;

namespace TokenRefresh.Settings;

/// <summary>Turns DATABASE_URL (a postgres:// URI or an Npgsql key=value string) into an Npgsql connection string.</summary>
internal static class DatabaseUrl
{
    /// <summary>A host on this machine (no network to cross, so nothing for TLS to protect).</summary>
    public static bool IsLoopback(string? host) =>
        host is null || host.StartsWith('/') || host is "localhost" || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip));

    /// <summary>Whether the connection string names a pool size itself (an operator's, kept as it is).</summary>
    public static bool SetsMaxPoolSize(string connectionString)
    {
        var keys = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>();
        return keys.Any(k => k.Replace(" ", "", StringComparison.Ordinal).Equals("MaximumPoolSize", StringComparison.OrdinalIgnoreCase)
            || k.Replace(" ", "", StringComparison.Ordinal).Equals("MaxPoolSize", StringComparison.OrdinalIgnoreCase));
    }

    /// <exception cref="SettingsException">The value is malformed; the message never contains the value.</exception>
    public static NpgsqlConnectionStringBuilder Parse(string value)
    {
        var builder = value.Contains("://", StringComparison.Ordinal) ? FromUri(value) : FromKeyValue(value);
        if (string.IsNullOrEmpty(builder.Host))
        {
            throw Invalid("it names no host");
        }

        // No session time zone is forced: a pooler may not pass it on, and the SQL converts timestamps without a
        // time zone to and from UTC itself (TableShape.At, TableShape.Time), whatever the session's TimeZone.
        if (string.IsNullOrEmpty(builder.ApplicationName))
        {
            builder.ApplicationName = "tokenrefresh";
        }

        return builder;
    }

    private static NpgsqlConnectionStringBuilder FromKeyValue(string value)
    {
        try
        {
            return new NpgsqlConnectionStringBuilder(value);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or KeyNotFoundException)
        {
            // The parser's own message may quote the value, password included.
            throw Invalid("it is neither a postgresql:// URL nor a key=value connection string");
        }
    }

    private static NpgsqlConnectionStringBuilder FromUri(string value)
    {
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri))
        {
            throw Invalid("it is not a well-formed URL");
        }

        if (uri.Scheme is not ("postgres" or "postgresql"))
        {
            throw Invalid($"the scheme must be postgresql:// or postgres://, not {uri.Scheme}://");
        }

        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = uri.IdnHost.Trim('[', ']'),
            Port = uri.IsDefaultPort || uri.Port < 0 ? 5432 : uri.Port,
        };

        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }

        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Length > 0)
        {
            builder.Database = database;
        }

        foreach (var (key, parameter) in QueryParameters(uri.Query))
        {
            ApplyParameter(builder, key, parameter);
        }

        return builder;
    }

    private static IEnumerable<(string Key, string Value)> QueryParameters(string query)
    {
        foreach (var pair in query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(equals < 0 ? pair : pair[..equals]);
            var value = equals < 0 ? "" : Uri.UnescapeDataString(pair[(equals + 1)..].Replace('+', ' '));
            yield return (key, value);
        }
    }

    // The libpq parameters that hosting providers put in their URLs.
    private static void ApplyParameter(NpgsqlConnectionStringBuilder builder, string key, string value)
    {
        switch (key.ToLowerInvariant())
        {
            case "sslmode":
                builder.SslMode = value.ToLowerInvariant() switch
                {
                    "disable" => SslMode.Disable,
                    "allow" => SslMode.Allow,
                    "prefer" => SslMode.Prefer,
                    "require" => SslMode.Require,
                    "verify-ca" => SslMode.VerifyCA,
                    "verify-full" => SslMode.VerifyFull,
                    _ => throw Invalid($"sslmode '{value}' is not one of disable, allow, prefer, require, verify-ca, verify-full"),
                };
                break;
            case "sslrootcert":
                builder.RootCertificate = value;
                break;
            case "connect_timeout":
                builder.Timeout = int.TryParse(value, out var seconds) && seconds >= 0
                    ? seconds
                    : throw Invalid($"connect_timeout '{value}' is not a whole number of seconds");
                break;
            case "application_name":
                builder.ApplicationName = value;
                break;
            case "options":
                builder.Options = value;
                break;
            case "target_session_attrs":
                builder.TargetSessionAttributes = value;
                break;
            case "channel_binding":
                builder.ChannelBinding = value.ToLowerInvariant() switch
                {
                    "disable" => ChannelBinding.Disable,
                    "prefer" => ChannelBinding.Prefer,
                    "require" => ChannelBinding.Require,
                    _ => throw Invalid($"channel_binding '{value}' is not one of disable, prefer, require"),
                };
                break;
            case "gssencmode":
                // Npgsql negotiates GSS encryption itself; accepted so that provider URLs work unchanged.
                break;
            case "max_pool_size":
                builder.MaxPoolSize = int.TryParse(value, out var size) && size >= 1
                    ? size
                    : throw Invalid($"max_pool_size '{value}' is not a whole number of connections, at least 1");
                break;
            case "max_auto_prepare":
                builder.MaxAutoPrepare = int.TryParse(value, out var prepared) && prepared >= 0
                    ? prepared
                    : throw Invalid($"max_auto_prepare '{value}' is not a whole number");
                break;
            default:
                throw Invalid($"the query parameter '{key}' is not supported (supported: sslmode, sslrootcert, channel_binding, connect_timeout, application_name, options, target_session_attrs, max_pool_size, max_auto_prepare)");
        }
    }

    private static SettingsException Invalid(string why) => new($"DATABASE_URL is invalid: {why}.");
}
