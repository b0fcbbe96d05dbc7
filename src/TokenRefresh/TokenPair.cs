using System.Text.Json;

namespace TokenRefresh;

/// <summary>A rotated access/refresh token pair. The response that carried it is its only copy.</summary>
internal sealed record TokenPair(string AccessToken, string RefreshToken, TimeSpan ExpiresIn, bool LifetimeAssumed)
{
    // Records print their members: keep the tokens out of any accidental log line or exception message.
    public override string ToString() => $"TokenPair {{ ExpiresIn = {ExpiresIn}, LifetimeAssumed = {LifetimeAssumed} }}";

    /// <summary>
    /// Reads access_token, refresh_token and expires_in from a token response. A missing, negative or absurd
    /// expires_in becomes <paramref name="assumedLifetime"/>, so no token is ever taken as never expiring.
    /// </summary>
    public static TokenPair? Parse(JsonElement root, TimeSpan assumedLifetime, TimeSpan longestPlausible)
    {
        if (Text(root, "access_token") is not { } access || Text(root, "refresh_token") is not { } refresh)
        {
            return null;
        }

        var plausible = root.TryGetProperty("expires_in", out var e)
            && e.ValueKind == JsonValueKind.Number
            && e.TryGetDouble(out var seconds)
            && seconds > 0
            && seconds <= longestPlausible.TotalSeconds;
        return plausible
            ? new TokenPair(access, refresh, TimeSpan.FromSeconds(e.GetDouble()), LifetimeAssumed: false)
            : new TokenPair(access, refresh, assumedLifetime, LifetimeAssumed: true);
    }

    private static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text
            ? text
            : null;
}
