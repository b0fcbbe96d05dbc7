using System.Text.RegularExpressions;
using Dapper;
using Npgsql;

namespace TokenRefresh.IntegrationTests.Infrastructure;

public sealed record EtsyRow(Guid Id, string? AccessToken, string? RefreshToken, DateTime? ExpiresAt, DateTime UpdatedAt);

public sealed record StateRow(
    int ConsecutiveFailures, string? LastError, DateTime? NextAttemptAt, bool NeedsReauth, DateTime? UnknownOutcomeAt, DateTime? LastSuccessAt);

public sealed record ExpiringShopRow(
    string? AccessToken, string? RefreshToken, DateTime? ExpiresAt, DateTime? RefreshExpiresAt, bool IsActive, DateTime UpdatedAt);

public sealed record ShopRow(Guid Id, string ShopDomain, string? AccessToken, bool IsActive, DateTime UpdatedAt);

public sealed record EbayRow(Guid Id, string? AccessToken, string? RefreshToken, DateTime? ExpiresAt, DateTime? RefreshExpiresAt, DateTime UpdatedAt);

/// <summary>
/// The main application's tables as a test database has them: the original schema verbatim
/// (scripts/sql/app-tables.sql: etsy_users keyed user_id, timestamps without time zone holding UTC), or a variant
/// of it that teams also have (keyed id, timestamptz).
/// </summary>
public sealed record SchemaVariant(string EtsyKey, string Timestamp)
{
    public static readonly SchemaVariant Original = new("user_id", "timestamp");

    /// <summary>A script of ours (app tables, expiring columns) rewritten for this variant.</summary>
    public string Apply(string ddl)
    {
        if (EtsyKey != Original.EtsyKey)
        {
            ddl = ddl.Replace("    user_id           uuid PRIMARY KEY", $"    {EtsyKey,-17} uuid PRIMARY KEY", StringComparison.Ordinal);
        }

        return Timestamp == "timestamptz"
            ? Regex.Replace(ddl.Replace("(now() AT TIME ZONE 'UTC')", "now()", StringComparison.Ordinal), @"\btimestamp(?=[ ,;\n])", "timestamptz")
            : ddl.Replace("timestamptz", "timestamp", StringComparison.Ordinal);
    }

    public override string ToString() => $"{EtsyKey} key, {Timestamp}";
}

/// <summary>
/// A fresh database per test: the main application's tables (scripts/sql/app-tables.sql), the service's
/// migrations, and the least-privilege grants (scripts/sql/service-grants.sql) for the tokenrefresh role,
/// which is what the service connects as. Its sessions' time zone is not UTC (Pacific/Chatham, +13:45), as on
/// many servers, so a timestamp stored or compared in local time shows; the tests' own connections use UTC.
/// </summary>
public sealed class TestDatabase : IAsyncDisposable
{
    public const string SessionTimeZone = "Pacific/Chatham";
    public const string ServiceRole = "tokenrefresh";

    // A template of this process's own: another test process on the same server (a second run beside this one) builds its own.
    private static readonly string Template = $"tokenrefresh_template_{Environment.ProcessId}";
    private static readonly SemaphoreSlim ServerLock = new(1, 1);
    private static bool _serverReady;

    private readonly string _serverAdminUrl;

    private TestDatabase(string name, string adminUrl, string serverAdminUrl, SchemaVariant variant)
    {
        _serverAdminUrl = serverAdminUrl;
        Name = name;
        AdminUrl = adminUrl;
        Variant = variant;
        ConnectionString = new Npgsql.NpgsqlConnectionStringBuilder(PostgresServer.ConnectionString(adminUrl)) { Timezone = "UTC" }.ConnectionString;
        Password = ServicePassword(serverAdminUrl);
        var service = new UriBuilder(adminUrl) { UserName = ServiceRole, Password = Password };
        Url = service.Uri.AbsoluteUri;
    }

    public string Name { get; }

    public SchemaVariant Variant { get; }

    /// <summary>etsy_users' key column in this database.</summary>
    public string EtsyKey => Variant.EtsyKey;

    /// <summary>The service's DATABASE_URL: the least-privilege role, with its password.</summary>
    public string Url { get; }

    /// <summary>The superuser's URL to this database, for setup, inspection and `migrate`.</summary>
    public string AdminUrl { get; }

    /// <summary>The superuser's connection string, for the tests' own setup and inspection.</summary>
    public string ConnectionString { get; }

    /// <summary>The service role's password: must never appear in a log line.</summary>
    public string Password { get; }

    /// <summary>A database with the main application's tables; <paramref name="migrated"/>: with the service's table and grants too.</summary>
    public static async Task<TestDatabase> CreateAsync(bool migrated = true, SchemaVariant? variant = null)
    {
        variant ??= SchemaVariant.Original;
        var original = variant == SchemaVariant.Original;
        await EnsureServerAsync(); // every variant needs the role, whichever test creates the first database

        var name = $"tr_{Guid.NewGuid():N}";
        using (var admin = PostgresServer.OpenAdmin())
        {
            await admin.ExecuteAsync(original ? $"CREATE DATABASE {name} TEMPLATE {Template}" : $"CREATE DATABASE {name}");
            await admin.ExecuteAsync($"ALTER DATABASE {name} SET TimeZone = '{SessionTimeZone}'");
        }

        var db = new TestDatabase(name, new UriBuilder(PostgresServer.AdminUrl) { Path = "/" + name }.Uri.AbsoluteUri, PostgresServer.AdminUrl, variant);
        if (!original)
        {
            await db.ExecuteAsync(variant.Apply(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "app-tables.sql"))));
        }

        if (migrated)
        {
            await db.MigrateAndGrantAsync();
        }

        return db;
    }

    /// <summary>The same on a cluster of the test's own (no template there).</summary>
    public static async Task<TestDatabase> CreateOnAsync(string serverAdminUrl)
    {
        var name = $"tr_{Guid.NewGuid():N}";
        using (var admin = PostgresServer.OpenAdmin(adminUrl: serverAdminUrl))
        {
            await admin.ExecuteAsync($"CREATE DATABASE {name}");
            await admin.ExecuteAsync($"ALTER DATABASE {name} SET TimeZone = '{SessionTimeZone}'");
            await CreateRoleAsync(admin, serverAdminUrl);
        }

        var db = new TestDatabase(name, new UriBuilder(serverAdminUrl) { Path = "/" + name }.Uri.AbsoluteUri, serverAdminUrl, SchemaVariant.Original);
        await db.ExecuteAsync(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "app-tables.sql")));
        await db.MigrateAndGrantAsync();
        return db;
    }

    // The role belongs to the cluster, shared by every test database and every test process on it: so it is created
    // if missing, never dropped, and its password comes from the server's own (secret) admin URL, the same in each process.
    private static string ServicePassword(string serverAdminUrl) =>
        "svc-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(serverAdminUrl)))[..32];

    private static async Task CreateRoleAsync(NpgsqlConnection admin, string serverAdminUrl)
    {
        const string Create = $"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ServiceRole}') THEN CREATE ROLE {ServiceRole} LOGIN; END IF; END $$";
        try
        {
            await admin.ExecuteAsync(Create);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.DuplicateObject)
        {
            // Another process created it at the same moment: it exists, which is all that is needed.
        }

        await admin.ExecuteAsync($"ALTER ROLE {ServiceRole} PASSWORD '{ServicePassword(serverAdminUrl)}'");
    }

    /// <summary>What an operator does once: `migrate` as the owner, then the grants script.</summary>
    public async Task MigrateAndGrantAsync()
    {
        await using (var dataSource = NpgsqlDataSource.Create(ConnectionString))
        {
            await Persistence.Migrator.ApplyAsync(dataSource);
        }

        await ExecuteAsync(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "service-grants.sql")));
    }

    /// <summary>Once per test process: the service role, and the template of the original schema.</summary>
    private static async Task EnsureServerAsync()
    {
        await ServerLock.WaitAsync();
        try
        {
            if (_serverReady)
            {
                return;
            }

            using (var admin = PostgresServer.OpenAdmin())
            {
                await CreateRoleAsync(admin, PostgresServer.AdminUrl);
                await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {Template}"); // left by an earlier process with this id
                await admin.ExecuteAsync($"CREATE DATABASE {Template}");
            }

            using (var template = PostgresServer.OpenAdmin(Template))
            {
                await template.ExecuteAsync(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "app-tables.sql")));
            }

            AppDomain.CurrentDomain.ProcessExit += (_, _) => DropTemplate();
            _serverReady = true;
        }
        finally
        {
            ServerLock.Release();
        }
    }

    /// <summary>A session of the main application's listening on the re-authorisation channel; each payload goes to <paramref name="received"/>.</summary>
    public async Task<NpgsqlConnection> ListenReauthAsync(Action<string> received)
    {
        var listener = await OpenAsync();
        listener.Notification += (_, e) => received(e.Payload);
        await using var listen = new NpgsqlCommand("LISTEN tokenrefresh_reauth", listener);
        await listen.ExecuteNonQueryAsync();
        return listener;
    }

    public async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async Task ExecuteAsync(string sql, object? parameters = null)
    {
        await using var c = await OpenAsync();
        await c.ExecuteAsync(sql, parameters);
    }

    public async Task<List<T>> QueryAsync<T>(string sql, object? parameters = null)
    {
        await using var c = await OpenAsync();
        return (await c.QueryAsync<T>(sql, parameters)).AsList();
    }

    public async Task<T> ScalarAsync<T>(string sql, object? parameters = null)
    {
        await using var c = await OpenAsync();
        return (await c.ExecuteScalarAsync<T>(sql, parameters))!;
    }

    public async Task<Guid> AddEtsyUserAsync(string? refreshToken, DateTimeOffset? expiresAt, string? accessToken = "old-access-token")
    {
        await using var c = await OpenAsync();
        return await c.ExecuteScalarAsync<Guid>(
            $"""
            INSERT INTO etsy_users (access_token, refresh_token, token_expires_at, updated_at)
            VALUES (@accessToken, @refreshToken, @expiresAt, @updatedAt)
            RETURNING {EtsyKey}
            """,
            new { accessToken, refreshToken, expiresAt, updatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) });
    }

    /// <summary>What the main application does to add eBay: scripts/sql/ebay-users.sql, then the grants again.</summary>
    public async Task AddEbayTableAsync()
    {
        await ExecuteAsync(Variant.Apply(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "ebay-users.sql"))));
        await ExecuteAsync(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "service-grants.sql")));
    }

    public async Task<Guid> AddEbayUserAsync(string refreshToken, DateTimeOffset? expiresAt, DateTimeOffset refreshExpiresAt)
    {
        await using var c = await OpenAsync();
        return await c.ExecuteScalarAsync<Guid>(
            """
            INSERT INTO ebay_users (access_token, refresh_token, token_expires_at, refresh_token_expires_at, updated_at)
            VALUES ('old-ebay-access-token', @refreshToken, @expiresAt, @refreshExpiresAt, @updatedAt)
            RETURNING user_id
            """,
            new { refreshToken, expiresAt, refreshExpiresAt, updatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) });
    }

    public async Task<EbayRow> GetEbayUserAsync(Guid id)
    {
        await using var c = await OpenAsync();
        return await c.QuerySingleAsync<EbayRow>(
            """
            SELECT user_id AS Id, access_token AS AccessToken, refresh_token AS RefreshToken, token_expires_at::timestamptz AS ExpiresAt,
                   refresh_token_expires_at::timestamptz AS RefreshExpiresAt, updated_at::timestamptz AS UpdatedAt
            FROM ebay_users WHERE user_id = @id
            """,
            new { id });
    }

    public async Task<EtsyRow> GetEtsyUserAsync(Guid id)
    {
        await using var c = await OpenAsync();
        return await c.QuerySingleAsync<EtsyRow>(
            $"""
            SELECT {EtsyKey} AS Id, access_token AS AccessToken, refresh_token AS RefreshToken,
                   token_expires_at::timestamptz AS ExpiresAt, updated_at::timestamptz AS UpdatedAt
            FROM etsy_users WHERE {EtsyKey} = @id
            """,
            new { id });
    }

    public async Task<Guid> AddShopifyStoreAsync(string shopDomain, string? accessToken, bool isActive = true)
    {
        await using var c = await OpenAsync();
        return await c.ExecuteScalarAsync<Guid>(
            """
            INSERT INTO shopify_stores (shop_domain, access_token, is_active, updated_at)
            VALUES (@shopDomain, @accessToken, @isActive, @updatedAt)
            RETURNING id
            """,
            new { shopDomain, accessToken, isActive, updatedAt = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero) });
    }

    public async Task<ShopRow> GetShopifyStoreAsync(Guid id)
    {
        await using var c = await OpenAsync();
        return await c.QuerySingleAsync<ShopRow>(
            """
            SELECT id AS Id, shop_domain AS ShopDomain, access_token AS AccessToken, is_active AS IsActive,
                   updated_at::timestamptz AS UpdatedAt
            FROM shopify_stores WHERE id = @id
            """,
            new { id });
    }

    /// <summary>What the main application does to adopt expiring Shopify tokens: the migration, then the grants again.</summary>
    public async Task AddExpiringColumnsAsync()
    {
        await ExecuteAsync(Variant.Apply(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "shopify-expiring-tokens.sql"))));
        await ExecuteAsync(await File.ReadAllTextAsync(Repo.File("scripts", "sql", "service-grants.sql")));
    }

    public async Task<Guid> AddExpiringStoreAsync(string shopDomain, string accessToken, string refreshToken, DateTimeOffset expiresAt, DateTimeOffset refreshExpiresAt)
    {
        await using var c = await OpenAsync();
        return await c.ExecuteScalarAsync<Guid>(
            """
            INSERT INTO shopify_stores (shop_domain, access_token, refresh_token, token_expires_at, refresh_token_expires_at, updated_at)
            VALUES (@shopDomain, @accessToken, @refreshToken, @expiresAt, @refreshExpiresAt, '2026-01-01T00:00:00Z')
            RETURNING id
            """,
            new { shopDomain, accessToken, refreshToken, expiresAt, refreshExpiresAt });
    }

    public async Task<ExpiringShopRow> GetExpiringStoreAsync(Guid id)
    {
        await using var c = await OpenAsync();
        return await c.QuerySingleAsync<ExpiringShopRow>(
            """
            SELECT access_token AS AccessToken, refresh_token AS RefreshToken, token_expires_at::timestamptz AS ExpiresAt,
                   refresh_token_expires_at::timestamptz AS RefreshExpiresAt, is_active AS IsActive, updated_at::timestamptz AS UpdatedAt
            FROM shopify_stores WHERE id = @id
            """,
            new { id });
    }

    /// <summary>The service's state row for an account, or null.</summary>
    public async Task<StateRow?> GetStateAsync(string platform, Guid id)
    {
        await using var c = await OpenAsync();
        return await c.QuerySingleOrDefaultAsync<StateRow>(
            """
            SELECT consecutive_failures AS ConsecutiveFailures, last_error AS LastError, next_attempt_at AS NextAttemptAt,
                   needs_reauth AS NeedsReauth, unknown_outcome_at AS UnknownOutcomeAt, last_success_at AS LastSuccessAt
            FROM token_refresh_state WHERE platform = @platform AND account_id = @id
            """,
            new { platform, id = id.ToString() });
    }

    private static void DropTemplate()
    {
        try
        {
            using var admin = PostgresServer.OpenAdmin();
            admin.Execute($"DROP DATABASE IF EXISTS {Template}");
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // A throwaway server may be gone already; a long-lived one keeps it until this process id comes again.
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var admin = PostgresServer.OpenAdmin(adminUrl: _serverAdminUrl);
        await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)");
    }
}
