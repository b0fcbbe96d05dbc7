
namespace TokenRefresh.Tests;

public sealed class CutoffStatusTests
{
    private static readonly DateOnly Cutoff = new(2027, 1, 1);

    [Theory]
    [InlineData(26, 12, true, "12 active stores still hold a non-expiring offline token; Shopify refuses them from 2027-01-01 (26 days left). Run `tokenrefresh shopify migrate-expiring --all --dry-run`, then `tokenrefresh shopify migrate-expiring --all --yes`.")]
    [InlineData(0, 1, true, "1 active stores still hold a non-expiring offline token; Shopify refuses them from today, 2027-01-01. Run `tokenrefresh shopify migrate-expiring --all --dry-run`, then `tokenrefresh shopify migrate-expiring --all --yes`.")]
    [InlineData(-3, 5, true, "5 active stores still hold a non-expiring offline token; Shopify has refused them since 2027-01-01 (3 days ago). Run `tokenrefresh shopify migrate-expiring --all --dry-run`, then `tokenrefresh shopify migrate-expiring --all --yes`.")]
    [InlineData(10, 7, false, "7 active stores still hold a non-expiring offline token; Shopify refuses them from 2027-01-01 (10 days left). Apply scripts/sql/shopify-expiring-tokens.sql (then scripts/sql/service-grants.sql), then run `tokenrefresh shopify migrate-expiring --all --dry-run` and `tokenrefresh shopify migrate-expiring --all --yes`.")]
    [InlineData(10, 0, true, "no active store holds a non-expiring offline token: ready for 2027-01-01.")]
    public void ToString_TheCountTheDayTheDaysLeftAndWhatToRun(int daysLeft, long stores, bool columns, string expected) =>
        Assert.Equal(expected, new CutoffStatus(Cutoff, daysLeft, stores, columns).ToString());
}
