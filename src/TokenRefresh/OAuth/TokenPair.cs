using System.Text.Json;

namespace TokenRefresh.OAuth;

/// <summary>
/// A refreshed access token, and the new refresh token where the platform rotates them (null where it does not). The
/// response that carried a rotated pair is its only copy.
/// </summary>
internal sealed record TokenPair(string AccessToken, string? RefreshToken, TimeSpan ExpiresIn, bool LifetimeAssumed, TimeSpan? RefreshExpiresIn = null)
{
    // Records print their members: keep the tokens out of any accidental log line or exception message.
    public override string ToString() => $"TokenPair {{ ExpiresIn = {ExpiresIn}, LifetimeAssumed = {LifetimeAssumed}, RefreshExpiresIn = {RefreshExpiresIn} }}";

    /// <summary>
    /// Reads access_token, refresh_token and expires_in from a token response; null when it lacks the access token, or
    /// the refresh token of a platform that <paramref name="rotates"/>. A missing, negative or absurd expires_in becomes
    /// <paramref name="assumedLifetime"/>, so no token is ever taken as never expiring.
    /// </summary>
    public static TokenPair? Parse(JsonElement root, TimeSpan assumedLifetime, TimeSpan longestPlausible, bool rotates = true)
    {
        var refresh = Text(root, "refresh_token");
        if (Text(root, "access_token") is not { } access || (rotates && refresh is null))
        {
            return null;
        }

        // Some platforms say how long the refresh token lives.
        var refreshLifetime = Seconds(root, "refresh_token_expires_in") is { } r && r > 0 && r <= TimeSpan.FromDays(3650).TotalSeconds
            ? TimeSpan.FromSeconds(r)
            : (TimeSpan?)null;
        return Seconds(root, "expires_in") is { } seconds && seconds > 0 && seconds <= longestPlausible.TotalSeconds
            ? new TokenPair(access, refresh, TimeSpan.FromSeconds(seconds), LifetimeAssumed: false, refreshLifetime)
            : new TokenPair(access, refresh, assumedLifetime, LifetimeAssumed: true, refreshLifetime);
    }

    private static double? Seconds(JsonElement root, string name) =>
        root.TryGetProperty(name, out var e) && e.ValueKind == JsonValueKind.Number && e.TryGetDouble(out var seconds) ? seconds : null;

    private static string? Text(JsonElement root, string name) =>
        root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text
            ? text
            : null;
}
