using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;
using TokenRefresh.Scheduling;
using TokenRefresh.Settings;
using TokenRefresh.Status;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// Shopify's non-expiring offline tokens, validated with the cheapest Admin API call (the original's job): each cycle,
/// shopify_stores is read from the catalog, its statements built for it (once per shape), and a
/// <see cref="ShopifyValidationCycle"/> with a fresh incident guard does the cycle's work.
/// </summary>
internal sealed class ShopifyValidation(
    ShopifyClient client,
    ShopifySchema schema,
    ShopifySettings settings,
    CycleSettings cycle,
    NonExpiringCutoff cutoff,
    NpgsqlDataSource db,
    TimeProvider time,
    TokenRefreshMetrics metrics,
    PlatformHealthRegistry health,
    ILogger<ShopifyValidation> logger) : IPlatform
{
    /// <summary>Its id: its state rows, re-authorisation signals and status carry it.</summary>
    public const string Id = "shopify";

    private readonly IncidentGuard.Memory _waves = new();
    private (TableShape Shape, ShopifyValidationStatements Statements)? _built;

    public static readonly PlatformInfo Description = new(Id, "Shopify", ShopifyRegistration.Lane, null, Outcome.Validated, ShopifyRegistration.Shop)
    {
        LabelIsShopDomain = true,
    };

    public PlatformInfo Info { get; } = Description with { LaneCap = settings.MaxConcurrency };

    public async Task<IPlatformCycle?> StartCycleAsync(CancellationToken cancellationToken)
    {
        var (shape, statements) = await StatementsAsync(cancellationToken);
        return new ShopifyValidationCycle(Info, shape, statements, client, settings, cycle, db, time, metrics, health.For(Info.Lane),
            new IncidentGuard(_waves), cutoff, logger);
    }

    public async Task<StatusSource?> StatusSourceAsync(CancellationToken cancellationToken)
    {
        var (shape, _) = await StatementsAsync(cancellationToken);
        return StatusSourceFor(Info, shape) with
        {
            IntervalSeconds = (long)settings.ValidateInterval.TotalSeconds,
            Complete = async (connection, status, ct) => status with { NonExpiringCutoff = await cutoff.ReadAsync(connection, shape, ct) },
        };
    }

    /// <summary>What `status` counts for validation on shopify_stores as it is.</summary>
    public static StatusSource StatusSourceFor(PlatformInfo info, TableShape shape) => new(
        info, shape, "COALESCE(a.access_token, '')", ShopifySchema.HasExpiringTokens(shape) ? "a.is_active AND a.refresh_token IS NULL" : "a.is_active",
        ShopifyValidationStatements.DueSql, ShopDomain.Sql("a.shop_domain"), "a.shop_domain", RefreshTokenEnds: null,
        ShopifyValidationCycle.DeactivationPaused);

    // Built again only when the table changed (a migration of the main application's).
    private async Task<(TableShape Shape, ShopifyValidationStatements Statements)> StatementsAsync(CancellationToken cancellationToken)
    {
        var shape = await schema.ReadAsync(cancellationToken);
        return _built is { } built && built.Shape.SameAs(shape) ? built : (_built = (shape, new ShopifyValidationStatements(Info.Id, shape))).Value;
    }
}
