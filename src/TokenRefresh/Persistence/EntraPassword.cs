using Azure.Core;
using Microsoft.Extensions.Logging;

namespace TokenRefresh.Persistence;

/// <summary>
/// DATABASE_AUTH=entra: the database password is a Microsoft Entra ID access token for Azure Database for PostgreSQL,
/// from Azure.Identity (DefaultAzureCredential: the managed identity in Azure, the developer's login locally). Npgsql
/// asks for it whenever it opens a physical connection; the token is kept until shortly before it expires (5 minutes,
/// or half its life when that is shorter) and then renewed, so no connection is ever opened with an expired token.
/// </summary>
internal sealed partial class EntraPassword(TokenCredential credential, TimeProvider time, ILogger<EntraPassword> logger) : IDisposable
{
    /// <summary>The scope of Azure Database for PostgreSQL's tokens.</summary>
    public const string Scope = "https://ossrdbms-aad.database.windows.net/.default";

    private static readonly TimeSpan RenewBefore = TimeSpan.FromMinutes(5);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private AccessToken? _token;
    private DateTimeOffset _renewAt;

    public async ValueTask<string> GetAsync(CancellationToken cancellationToken)
    {
        if (_token is { } current && time.GetUtcNow() < _renewAt)
        {
            return current.Token;
        }

        await _gate.WaitAsync(cancellationToken);
        try
        {
            if (_token is { } fresh && time.GetUtcNow() < _renewAt)
            {
                return fresh.Token;
            }

            var token = await credential.GetTokenAsync(new TokenRequestContext([Scope]), cancellationToken);
            var now = time.GetUtcNow();
            var life = token.ExpiresOn - now;
            _renewAt = token.ExpiresOn - (life / 2 < RenewBefore ? life / 2 : RenewBefore);
            _token = token;
            Log.Renewed(logger, token.ExpiresOn);
            return token.Token;
        }
        finally
        {
            _gate.Release();
        }
    }

    public void Dispose() => _gate.Dispose();

    private static partial class Log
    {
        [LoggerMessage(603, LogLevel.Debug, "A Microsoft Entra ID token for the database was obtained; it expires at {ExpiresOn:u}")]
        public static partial void Renewed(ILogger logger, DateTimeOffset expiresOn);
    }
}
