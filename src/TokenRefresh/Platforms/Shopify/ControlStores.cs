using Dapper;
using Microsoft.Extensions.Logging;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Platforms.Shopify;

/// <summary>
/// The incident guard's second look, for a cycle whose rejections are few: a wave of 401s may begin at the end of a
/// cycle, or in one that had only a few stores due, and its first rejections then fall under the guard's limit. Before
/// any is switched off, Shopify is asked about a few stores whose check passed: if it rejects most of them too, the
/// rejections are not the stores' own doing. A real uninstall costs these few calls; nothing is written for them.
/// </summary>
internal sealed partial class ControlStores(NpgsqlDataSource db, string findSql, ShopifyClient client, ILogger logger)
{
    /// <summary>How many stores whose check passed are asked again.</summary>
    public const int Count = 5;

    /// <summary>Whether Shopify rejects most of the stores asked, besides the <paramref name="rejected"/> ones (their ids).</summary>
    public async Task<bool> RejectedTooAsync(IReadOnlyCollection<string> rejected)
    {
        IReadOnlyList<(string ShopDomain, string Token)> controls;
        try
        {
            await using var connection = await db.OpenConnectionAsync(CancellationToken.None);
            controls = await connection.ReadRowsAsync<(string, string)>(new CommandDefinition(
                findSql, new { Rejected = rejected.ToArray(), Most = Count }));
        }
        catch (NpgsqlException e)
        {
            // No second look: the guard's limit alone decides, as for a shop list with no other store.
            Log.ControlsUnread(logger, e);
            return false;
        }

        var results = await Task.WhenAll(controls.Select(c => client.ValidateAsync(c.ShopDomain, c.Token, CancellationToken.None)));
        var answered = results.Count(r => r.Status is CallStatus.Ok or CallStatus.Rejected);
        var refused = results.Count(r => r.Status == CallStatus.Rejected);
        if (answered == 0 || refused * 2 <= answered)
        {
            return false;
        }

        Log.ControlsRejected(logger, rejected.Count, refused, answered);
        return true;
    }

    private static partial class Log
    {
        [LoggerMessage(307, LogLevel.Error, "Shopify: {Count} stores were rejected (401, confirmed) in this cycle, and so were {Refused} of {Answered} stores whose last check passed: a wave, not the stores' own doing. None of them is deactivated, in this cycle or the next, and they stay active (reported as deactivation_paused). Check Shopify's status page, SHOPIFY_API_BASE_URL and SHOPIFY_API_VERSION, and whether the app's tokens were revoked")]
        public static partial void ControlsRejected(ILogger logger, int count, int refused, int answered);

        [LoggerMessage(308, LogLevel.Warning, "Shopify: the stores to ask again before switching stores off could not be read; the cycle's few rejections are decided without them")]
        public static partial void ControlsUnread(ILogger logger, Exception exception);
    }
}
