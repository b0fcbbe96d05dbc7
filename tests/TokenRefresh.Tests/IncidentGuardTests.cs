using TokenRefresh.Platforms.Shopify;

namespace TokenRefresh.Tests;

public sealed class IncidentGuardTests
{
    [Fact]
    public void FewAnswered_AllRejected_IsAWave_HoweverManyStoresWereDue()
    {
        // A cycle whose budget let 107 validations through, of a backlog of thousands: every one rejected.
        var guard = new IncidentGuard(new IncidentGuard.Memory());
        for (var i = 0; i < 107; i++)
        {
            guard.Rejected();
        }

        Assert.Equal(IncidentGuard.Floor, guard.Limit);
        Assert.Equal(IncidentGuard.Verdict.Wave, guard.Decide());
    }

    [Fact]
    public void RejectionsWithinTwoPercentOfTheAnswers_AreTheStoresOwn()
    {
        var guard = new IncidentGuard(new IncidentGuard.Memory());
        for (var i = 0; i < 394; i++)
        {
            guard.Accepted();
        }

        for (var i = 0; i < 8; i++)
        {
            guard.Rejected();
        }

        // 402 answers: a limit of 9 (2%, rounded up), and 8 rejections under it.
        Assert.Equal(9, guard.Limit);
        Assert.Equal(IncidentGuard.Verdict.Deactivate, guard.Decide());
    }
}
