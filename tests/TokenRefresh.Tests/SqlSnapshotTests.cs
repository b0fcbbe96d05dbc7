using System.Text;

namespace TokenRefresh.Tests;

/// <summary>
/// Every statement the service runs against the main application's tables, printed whole for the shapes teams have:
/// the original's tables (user_id, timestamp holding UTC), the same after scripts/sql/shopify-expiring-tokens.sql, and
/// the id/timestamptz variant. The snapshots are in tests/TokenRefresh.Tests/Sql: a change to a statement shows there in
/// review. When one differs, the statement as built now is written beside it (*.received.sql); set
/// TOKENREFRESH_UPDATE_SNAPSHOTS=1 to write it over the snapshot.
/// </summary>
public sealed class SqlSnapshotTests
{
    private const string Timestamp = "timestamp without time zone";
    private const string TimestampTz = "timestamp with time zone";

    private static TableShape Etsy(string key, string time) => new("etsy_users", key, new Dictionary<string, string>
    {
        [key] = "uuid", ["access_token"] = "text", ["refresh_token"] = "text", ["token_expires_at"] = time, ["updated_at"] = time,
    }, optionalMissing: null);

    private static TableShape EbayUsers(string time) => new("ebay_users", "user_id", new Dictionary<string, string>
    {
        ["user_id"] = "uuid", ["access_token"] = "text", ["refresh_token"] = "text", ["token_expires_at"] = time, ["refresh_token_expires_at"] = time,
        ["updated_at"] = time,
    }, optionalMissing: null);

    private static TableShape Stores(string time, string? expiringTime)
    {
        var types = new Dictionary<string, string>
        {
            ["id"] = "uuid", ["shop_domain"] = "text", ["access_token"] = "text", ["is_active"] = "boolean", ["updated_at"] = time,
        };
        if (expiringTime is not null)
        {
            types["refresh_token"] = "text";
            types["token_expires_at"] = expiringTime;
            types["refresh_token_expires_at"] = expiringTime;
        }

        return new("shopify_stores", "id", types, expiringTime is null ? "shopify_stores: no column refresh_token, token_expires_at, refresh_token_expires_at" : null);
    }

    [Theory]
    [InlineData("original", "user_id", Timestamp, null)]
    [InlineData("original-with-expiring-columns", "user_id", Timestamp, TimestampTz)] // as scripts/sql/shopify-expiring-tokens.sql adds them
    [InlineData("id-timestamptz", "id", TimestampTz, TimestampTz)]
    public void EveryStatement_AsItRuns_MatchesItsSnapshot(string name, string etsyKey, string time, string? expiringTime)
    {
        var text = Print(Etsy(etsyKey, time), Stores(time, expiringTime), EbayUsers(time));

        var snapshot = Path.Combine(Root(), "tests", "TokenRefresh.Tests", "Sql", $"{name}.sql");
        var received = Path.ChangeExtension(snapshot, ".received.sql");
        if (Environment.GetEnvironmentVariable("TOKENREFRESH_UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(snapshot, text);
        }

        if (File.Exists(snapshot) && File.ReadAllText(snapshot) == text)
        {
            File.Delete(received);
            return;
        }

        File.WriteAllText(received, text);
        Assert.Fail($"The statements differ from {snapshot}: compare it with {received} (TOKENREFRESH_UPDATE_SNAPSHOTS=1 writes it over the snapshot).");
    }

    [Fact]
    public void ServiceGrants_AreWrittenFromThePlatformsRegistrations()
    {
        var script = ServiceGrants.Script(TokenRefreshExtensions.Platforms.SelectMany(p => p.Tables));
        var file = Path.Combine(Root(), "scripts", "sql", "service-grants.sql");
        if (Environment.GetEnvironmentVariable("TOKENREFRESH_UPDATE_SNAPSHOTS") == "1")
        {
            File.WriteAllText(file, script);
        }

        Assert.True(File.ReadAllText(file) == script, $"{file} is not what the registrations give (TOKENREFRESH_UPDATE_SNAPSHOTS=1 writes it):\n{script}");
    }

    private static string Print(TableShape etsyUsers, TableShape stores, TableShape ebayUsers)
    {
        var text = new StringBuilder("-- Every statement the service runs against the main application's tables, as built for this shape.\n");
        var etsy = new EtsyPlatform(null!, null!, null!, new EtsySettings { ClientId = "id", ClientSecret = "secret" }, TimeProvider.System);
        Refresh(text, etsy, etsyUsers);

        var validation = new ShopifyValidationStatements(ShopifyValidation.Id, stores);
        Section(text, "Shopify", new()
        {
            ["schedule: find"] = validation.ScheduleFind, ["schedule: set"] = validation.ScheduleSet, ["schedule: all"] = validation.Schedule, ["count due"] = validation.CountDue, ["claim page"] = validation.ClaimPage, ["find account"] = validation.FindAccount,
            ["read one"] = validation.ReadOne, ["stores asked again (the incident guard)"] = validation.Controls, ["deactivate"] = validation.Deactivate, ["save validated"] = validation.SaveValidated, ["save state"] = validation.SaveState,
            ["stores deleted (PostgreSQL's counts)"] = validation.Leftovers.DeletionsSql, ["deleted stores' state"] = validation.Leftovers.FindSql, ["deleted stores' state removed"] = validation.Leftovers.RemoveSql, ["uncallable stores"] = ShopDomain.UncallableSql(stores), ["non-expiring stores (the cut-off)"] = NonExpiringCutoff.CountSql(stores),
        });
        Status(text, "Shopify", ShopifyValidation.StatusSourceFor(ShopifyValidation.Description, stores));

        if (ShopifySchema.HasExpiringTokens(stores))
        {
            Refresh(text, new ShopifyExpiring(null!, null!, new ShopifySettings { ApiKey = "key", ApiSecret = "secret" }), stores);
            var exchange = new ShopifyExchangeStatements(stores, ShopifyValidation.Id);
            Section(text, "Shopify migrate-expiring", new()
            {
                ["counts"] = exchange.Counts, ["candidates"] = exchange.Candidates, ["claim"] = exchange.Claim,
                ["why not claimed"] = exchange.WhyNotClaimed, ["store"] = exchange.Store, ["unmark"] = exchange.Unmark,
            });
        }

        var ebay = new Platforms.Ebay.EbayPlatform(null!, null!, new Platforms.Ebay.EbaySettings { ClientId = "id", ClientSecret = "secret", Scopes = "scope" });
        Refresh(text, ebay, ebayUsers);
        return text.ToString();
    }

    private static void Refresh(StringBuilder text, IRefreshTokenPlatform platform, TableShape shape)
    {
        var sql = new OAuthStatements(platform, shape);
        var statements = new Dictionary<string, string>
        {
            ["count due"] = sql.CountDue, ["due page"] = sql.DuePage, ["no-expiry page"] = sql.NoExpiryPage, ["find account"] = sql.FindAccount,
            ["claim"] = sql.Claim, ["forced claim"] = sql.ForcedClaim, ["store"] = sql.Store, ["save state"] = sql.SaveState, ["needs re-authorisation (metric)"] = sql.NeedsReauth, ["accounts deleted (PostgreSQL's counts)"] = sql.Leftovers.DeletionsSql, ["deleted accounts' state"] = sql.Leftovers.FindSql, ["deleted accounts' state removed"] = sql.Leftovers.RemoveSql,
            ["refresh tokens ending"] = sql.RefreshTokensEnding, ["daily quota"] = sql.QuotaUse, ["daily quota (status)"] = OAuthStatements.QuotaStatusSql(platform),
        };
        if (sql.AnnounceEnding is { } announce)
        {
            statements["announce ending refresh tokens"] = announce;
        }

        Section(text, platform.Info.Name, statements);
        Status(text, platform.Info.Name, OAuthPlatform.StatusSourceFor(platform, shape));
    }

    private static void Status(StringBuilder text, string platform, StatusSource source) =>
        Section(text, platform, new() { ["status counts"] = source.Counts, ["status accounts"] = source.Accounts });

    private static void Section(StringBuilder text, string platform, Dictionary<string, string> statements)
    {
        foreach (var (name, sql) in statements)
        {
            text.Append($"\n-- {platform}: {name}\n{sql.Trim()};\n");
        }
    }

    private static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TokenRefresh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TokenRefresh.sln not found");
    }
}
