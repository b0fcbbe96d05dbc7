using System.Text.RegularExpressions;

namespace TokenRefresh.Shopify;

internal static partial class ShopDomain
{
    /// <summary>Why a shop_domain cannot be called, or null. A host name only: a path, a port or spaces must not reach the request URL.</summary>
    public static string? Problem(string? shopDomain) =>
        shopDomain is null || !Pattern().IsMatch(shopDomain) ? "shop_domain is not a valid host name" : null;

    [GeneratedRegex(@"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", RegexOptions.IgnoreCase)]
    private static partial Regex Pattern();
}
