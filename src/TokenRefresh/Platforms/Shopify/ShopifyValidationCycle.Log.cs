using Microsoft.Extensions.Logging;

namespace TokenRefresh.Platforms.Shopify;

internal sealed partial class ShopifyValidationCycle
{
    private static partial class Log
    {
        [LoggerMessage(305, LogLevel.Warning, "Shopify: {Count} stores were rejected (401, confirmed) in the cycle after a wave of rejections; they stay active until a calm cycle confirms them (reported as deactivation_paused)")]
        public static partial void DeactivationHeldAfterWave(ILogger logger, int count);

        [LoggerMessage(302, LogLevel.Error, "Shopify: more than {Limit} stores were rejected (401, confirmed) in this cycle, more than stores uninstall in a few minutes: none of them is deactivated, in this cycle or the next, and those stores stay active (reported as deactivation_paused). Check Shopify's status page, SHOPIFY_API_BASE_URL and SHOPIFY_API_VERSION, and whether the app's tokens were revoked (non-expiring offline tokens of public apps stop working on 2027-01-01: `tokenrefresh shopify migrate-expiring`)")]
        public static partial void DeactivationPaused(ILogger logger, int limit);

        [LoggerMessage(303, LogLevel.Error, "Shopify store {Shop}: something unexpected happened once the request may have been sent; the store is left as it is")]
        public static partial void UnexpectedAfterSend(ILogger logger, Exception exception, string? shop);

        [LoggerMessage(301, LogLevel.Error, "Shopify store {Shop}: its validation state could not be saved")]
        public static partial void StateNotSaved(ILogger logger, Exception exception, string? shop);

        [LoggerMessage(306, LogLevel.Error, "Shopify: {Count} stores' non-expiring offline tokens were refused (non_expiring_token_refused), e.g. {Examples}. They stay active and are flagged for the main application (token_refresh_needs_reauth); move them to expiring tokens: `tokenrefresh shopify migrate-expiring --all --dry-run`, then `--all --yes`")]
        public static partial void NonExpiringRefused(ILogger logger, int count, string examples);
    }

    /// <summary>Counts the cycle's refused stores, and keeps a few of their domains for the one line that says them.</summary>
    private sealed class RefusedStores
    {
        private const int Examples = 3;
        private readonly Lock _lock = new();
        private readonly List<string> _examples = [];
        private int _count;

        public void Add(string? shop)
        {
            lock (_lock)
            {
                _count++;
                if (_examples.Count < Examples && shop is not null)
                {
                    _examples.Add(shop);
                }
            }
        }

        public void Say(ILogger logger)
        {
            lock (_lock)
            {
                if (_count > 0)
                {
                    Log.NonExpiringRefused(logger, _count, string.Join(", ", _examples));
                }
            }
        }
    }
}
