namespace TokenRefresh.Settings;

/// <summary>Where each cycle posts the accounts whose users must reconnect, and the key (the secret's bytes) that signs it.</summary>
public sealed record WebhookSettings(Uri? Url, byte[]? Key)
{
    public static readonly Setting UrlSetting = new("REAUTH_WEBHOOK_URL", "each cycle posts the accounts whose users must reconnect here, signed and retried");

    public static readonly Setting SecretSetting = new("REAUTH_WEBHOOK_SECRET", "the signing secret: whsec_ and base64 (Standard Webhooks), or any 16 characters or more") { RequiredWith = "the URL" };

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

        return new(url, KeyOf(read.Text(SecretSetting)));
    }

    // As Standard Webhooks libraries read a secret: the bytes after "whsec_", base64-decoded; any other secret is its
    // UTF-8 bytes (a receiver's library then takes "whsec_" and their base64).
    private static byte[] KeyOf(string? secret)
    {
        const string Prefix = "whsec_";
        if (secret is not null && secret.StartsWith(Prefix, StringComparison.Ordinal))
        {
            var key = new byte[secret.Length];
            return Convert.TryFromBase64String(secret[Prefix.Length..], key, out var length) && length >= 16
                ? key[..length]
                : throw new SettingsException("REAUTH_WEBHOOK_SECRET starts with whsec_ but the rest is not base64 of 16 bytes or more.");
        }

        return secret is { Length: >= 16 }
            ? System.Text.Encoding.UTF8.GetBytes(secret)
            : throw new SettingsException("REAUTH_WEBHOOK_SECRET must be set, at least 16 characters, when REAUTH_WEBHOOK_URL is: it signs each request (webhook-signature).");
    }
}
