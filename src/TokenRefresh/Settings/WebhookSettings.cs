namespace TokenRefresh.Settings;

/// <summary>Where each cycle posts the accounts whose users must reconnect, and the key that signs it.</summary>
public sealed record WebhookSettings(Uri? Url, string? Secret)
{
    public static readonly Setting UrlSetting = new("REAUTH_WEBHOOK_URL", "each cycle posts the accounts whose users must reconnect here, signed and retried");

    public static readonly Setting SecretSetting = new("REAUTH_WEBHOOK_SECRET", "the HMAC-SHA256 key of the signature (16 characters or more)") { RequiredWith = "the URL" };

    public static readonly IReadOnlyList<Setting> Declared = [UrlSetting, SecretSetting];

    // The secret signs every request: never print it.
    public override string ToString() => nameof(WebhookSettings);

    /// <exception cref="SettingsException">The URL is not https (or http on loopback), or the secret is missing or short.</exception>
    public static WebhookSettings Read(SettingsReader read)
    {
        if (read.Text(UrlSetting) is not { } value)
        {
            return new(null, null);
        }

        // The URL is not repeated: a webhook's address often carries its own key.
        if (!Uri.TryCreate(value, UriKind.Absolute, out var url) || !(url.Scheme == "https" || (url.Scheme == "http" && SettingsReader.IsLoopback(url))))
        {
            throw new SettingsException("REAUTH_WEBHOOK_URL must be an absolute https:// URL (plain http only for loopback hosts).");
        }

        return read.Text(SecretSetting) is { Length: >= 16 } secret
            ? new(url, secret)
            : throw new SettingsException("REAUTH_WEBHOOK_SECRET must be set, at least 16 characters, when REAUTH_WEBHOOK_URL is: it signs each request (X-TokenRefresh-Signature).");
    }
}
