using Azure.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Npgsql;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// DATABASE_AUTH=entra, as on Azure Database for PostgreSQL with a managed identity: the password is an access token
/// from the credential, renewed before it expires. A stand-in credential hands out tokens that the local PostgreSQL
/// accepts as the role's password.
/// </summary>
public sealed class EntraAuthenticationTests
{
    private sealed class StandInCredential(FakeTimeProvider time) : TokenCredential
    {
        public string Current { get; set; } = "";

        public List<string> Scopes { get; } = [];

        public int Calls { get; private set; }

        public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken) =>
            GetTokenAsync(requestContext, cancellationToken).AsTask().GetAwaiter().GetResult();

        public override ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken)
        {
            Calls++;
            Scopes.AddRange(requestContext.Scopes);
            return ValueTask.FromResult(new AccessToken(Current, time.GetUtcNow().AddHours(1)));
        }
    }

    [Fact]
    public async Task Cycle_WithAnEntraToken_Connects_AndRenewsItBeforeItExpires()
    {
        using var cluster = PostgresServer.StartDedicated();
        await using var db = await TestDatabase.CreateOnAsync(cluster.AdminUrl);
        await using var h = await ServiceHarness.StartAsync(db);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var credential = new StandInCredential(time) { Current = $"entra-token-a-{Guid.NewGuid():N}" };
        await db.ExecuteAsync($"ALTER ROLE {TestDatabase.ServiceRole} PASSWORD '{credential.Current}'");
        h.Time = time;
        h.BeforeWiring = services => services.AddSingleton<TokenCredential>(credential);
        h.Settings["DATABASE_URL"] = new UriBuilder(db.Url) { Password = "" }.Uri.AbsoluteUri;
        h.Settings["DATABASE_AUTH"] = "entra";
        var first = h.Fake.Etsy.AddAccount(1);
        await db.AddEtsyUserAsync(first, time.GetUtcNow().AddMinutes(1));
        using var host = h.BuildHost();

        var before = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        Assert.Equal("Etsy: 1/1 refreshed, 0 failed", before.Platforms[0].ToString());
        Assert.Equal(1, credential.Calls);
        Assert.Equal(["https://ossrdbms-aad.database.windows.net/.default"], credential.Scopes);

        // Azure issues a new token; 56 minutes on, the one in hand is within 5 minutes of expiring.
        credential.Current = $"entra-token-b-{Guid.NewGuid():N}";
        await db.ExecuteAsync($"ALTER ROLE {TestDatabase.ServiceRole} PASSWORD '{credential.Current}'");
        time.Advance(TimeSpan.FromMinutes(56));
        host.Services.GetRequiredService<NpgsqlDataSource>().Clear(); // new physical connections from here
        var second = h.Fake.Etsy.AddAccount(2);
        await db.AddEtsyUserAsync(second, time.GetUtcNow().AddMinutes(1));

        var after = await host.Services.GetRequiredService<RefreshCycle>().RunAsync();

        // The first user's 1-hour token is due again 56 minutes on, with the second user's.
        Assert.Equal("Etsy: 2/2 refreshed, 0 failed", after.Platforms[0].ToString());
        Assert.Equal(2, credential.Calls);
        Assert.Equal(["https://ossrdbms-aad.database.windows.net/.default", "https://ossrdbms-aad.database.windows.net/.default"], credential.Scopes);
    }
}
