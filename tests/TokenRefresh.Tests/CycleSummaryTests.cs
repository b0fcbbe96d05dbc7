namespace TokenRefresh.Tests;

public sealed class CycleSummaryTests
{
    private static PlatformSummary Tally(string platform, Outcome success, params Outcome[] outcomes) =>
        outcomes.Aggregate(new PlatformSummary(platform, success), (s, o) => s.Add(new AccountResult(o)));

    [Fact]
    public void ToString_MatchesTheOriginalServiceWording()
    {
        var etsy = Tally("Etsy", Outcome.Refreshed, Outcome.Refreshed, Outcome.Refreshed, Outcome.Failed);
        var shopify = Tally("Shopify", Outcome.Validated,
            Outcome.Validated, Outcome.Validated, Outcome.Validated, Outcome.Deactivated, Outcome.Failed);

        Assert.Equal("Etsy: 2/3 refreshed, 1 failed", etsy.ToString());
        Assert.Equal("Shopify: 3/5 validated, 1 deactivated, 1 failed", shopify.ToString());
        Assert.Equal("Etsy: 2/3 refreshed, 1 failed; Shopify: 3/5 validated, 1 deactivated, 1 failed",
            new CycleSummary([etsy, shopify], TimeSpan.Zero).ToString());
    }

    [Fact]
    public void ToString_SkippedAccounts_AreCountedAndShown()
    {
        var etsy = Tally("Etsy", Outcome.Refreshed, Outcome.Refreshed, Outcome.Skipped);

        Assert.Equal("Etsy: 1/2 refreshed, 0 failed, 1 skipped", etsy.ToString());
    }

    [Fact]
    public void AnyFailed_OnlyFailuresAndCrashesCount()
    {
        var ok = Tally("Shopify", Outcome.Validated, Outcome.Validated, Outcome.Deactivated, Outcome.Skipped);

        Assert.False(new CycleSummary([ok], TimeSpan.Zero).AnyFailed);
        Assert.True(new CycleSummary([ok with { Crashed = true }], TimeSpan.Zero).AnyFailed);
        Assert.True(new CycleSummary([ok.Add(AccountResult.TransientFailure("timeout"))], TimeSpan.Zero).AnyFailed);
    }
}
