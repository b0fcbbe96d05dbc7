using TokenRefresh.Scheduling;

namespace TokenRefresh.Tests;

public sealed class CallSlotsTests
{
    private readonly CallSlots _slots = new(4, new Dictionary<string, int>());

    private static List<CallSlots.Slot> TakeAll(CallSlots.Lane lane)
    {
        var taken = new List<CallSlots.Slot>();
        while (lane.TryEnter(out var slot))
        {
            taken.Add(slot);
        }

        return taken;
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task FreedSlot_GoesToTheUrgentLane_ElseToTheOneWithFewerInFlight(bool etsyUrgent)
    {
        using var shopify = _slots.Join("shopify");
        using var etsy = _slots.Join("etsy");
        var shopifySlots = new[] { Take(shopify), Take(shopify) };
        _ = new[] { Take(etsy), Take(etsy) };
        etsy.MarkUrgent(etsyUrgent);
        var shopifyWaits = shopify.EnterAsync(CancellationToken.None); // waiting longer
        var etsyWaits = etsy.EnterAsync(CancellationToken.None);

        shopifySlots[0].Dispose();

        // Both waited with two in flight; Shopify now has one. An urgent Etsy goes first all the same.
        var (first, second) = etsyUrgent ? (etsyWaits, shopifyWaits) : (shopifyWaits, etsyWaits);
        var firstSlot = await first.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(second.IsCompleted);
        firstSlot.Dispose();
        shopifySlots[1].Dispose();
        (await second.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
    }

    [Fact]
    public void UrgentLane_TakesAllButOneSlot_TheRoutineLaneKeepsIt()
    {
        using var shopify = _slots.Join("shopify");
        using var etsy = _slots.Join("etsy");
        etsy.MarkUrgent(true);

        Assert.Equal(3, TakeAll(etsy).Count);
        Assert.Single(TakeAll(shopify));
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 3)]
    public void RoutineLane_BesideAnUrgentLane_HasOneSlot_UnlessTheUrgentLaneWaitsForItsPermit(bool awaitingPermit, int routineSlots)
    {
        using var shopify = _slots.Join("shopify");
        using var etsy = _slots.Join("etsy");
        etsy.MarkUrgent(true);
        etsy.AwaitingPermit = awaitingPermit;

        // Etsy holds no slot, yet while it wants them Shopify gets one; while it waits for a rate-limit permit, the
        // free slots are Shopify's, but one.
        Assert.Equal(routineSlots, TakeAll(shopify).Count);
    }

    [Fact]
    public void RoutineLanes_EachKeepTheirShareFree()
    {
        using var shopify = _slots.Join("shopify");
        using var etsy = _slots.Join("etsy");

        // As many as leave one slot for the other lane, below its share of two.
        Assert.Equal(3, TakeAll(etsy).Count);
        Assert.Single(TakeAll(shopify));
    }

    [Fact]
    public async Task SlotKeptForARoutineLane_GoesToIt_WhenTheUrgentLaneWaitsFirst()
    {
        using var shopify = _slots.Join("shopify");
        using var etsy = _slots.Join("etsy");
        etsy.MarkUrgent(true);
        var etsySlots = TakeAll(etsy);
        var shopifySlot = Take(shopify);
        var etsyWaits = etsy.EnterAsync(CancellationToken.None);
        var shopifyWaits = shopify.EnterAsync(CancellationToken.None);

        shopifySlot.Dispose();

        // The freed slot is Shopify's only one: it goes to Shopify, though the urgent Etsy waits too.
        (await shopifyWaits.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
        Assert.False(etsyWaits.IsCompleted);
        etsySlots[0].Dispose();
        (await etsyWaits.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
    }

    private static CallSlots.Slot Take(CallSlots.Lane lane) => lane.TryEnter(out var slot) ? slot : throw new InvalidOperationException("no slot free");
}
