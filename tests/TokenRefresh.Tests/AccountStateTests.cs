
namespace TokenRefresh.Tests;

public sealed class AccountStateTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 27, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Wait = TimeSpan.FromMinutes(1);
    private const string Token = "hash-of-token";

    [Fact]
    public void Failed_Transient_BacksOffOneTwoFourMinutesCappedAtAnHour()
    {
        var state = new AccountState();
        var waits = new List<TimeSpan>();
        for (var i = 0; i < 8; i++)
        {
            (state, _) = state.Failed(CallStatus.Transient, "malformed_response", outcomeUnknown: false, retryAfter: null, Token, Now, Wait);
            waits.Add(state.NextAttemptAt!.Value - Now);
        }

        Assert.Equal([1, 2, 4, 8, 16, 32, 60, 60], waits.Select(w => (int)w.TotalMinutes));
        Assert.Equal(8, state.ConsecutiveFailures);
    }

    [Fact]
    public void Failed_ServerErrorOrNoAnswer_FirstTimeOnlyTheInFlightWait_ThenBacksOff()
    {
        // The first says nothing about the account (the platform may be down): next cycle, or after the in-flight wait.
        var (first, _) = new AccountState().Failed(CallStatus.Transient, "connection_failed", outcomeUnknown: false, null, Token, Now, Wait);
        Assert.Equal(Now, first.NextAttemptAt);
        var (unknown, _) = new AccountState().Failed(CallStatus.Transient, "server_error_502", outcomeUnknown: true, null, Token, Now, Wait);
        Assert.Equal(Now + Wait, unknown.NextAttemptAt);

        // Again, while the platform answers others: the account's own backoff.
        var (second, _) = first.Failed(CallStatus.Transient, "server_error_500", outcomeUnknown: false, null, Token, Now, Wait);
        Assert.Equal(Now + AccountState.Backoff(2), second.NextAttemptAt);
        Assert.Equal(2, second.ConsecutiveFailures);
    }

    [Fact]
    public void Failed_PlatformSideAgain_BackoffEndsByHalfTheTimeTheAccessTokenHasLeft()
    {
        var (first, _) = new AccountState().Failed(CallStatus.Transient, "server_error_500", outcomeUnknown: false, null, Token, Now, Wait);

        // Its token ends in 50 s: the second failure's 2-minute backoff would outlast it; it waits 25 s.
        var (soon, _) = first.Failed(CallStatus.Transient, "server_error_500", false, null, Token, Now, Wait, accessExpiresAt: Now.AddSeconds(50));
        Assert.Equal(Now.AddSeconds(25), soon.NextAttemptAt);
        Assert.Equal(2, soon.ConsecutiveFailures);

        // An hour left, or already ended: the usual backoff.
        var (later, _) = first.Failed(CallStatus.Transient, "timeout", false, null, Token, Now, Wait, accessExpiresAt: Now.AddHours(1));
        Assert.Equal(Now + AccountState.Backoff(2), later.NextAttemptAt);
        var failing = first;
        for (var i = 0; i < 5; i++)
        {
            (failing, _) = failing.Failed(CallStatus.Transient, "network_error", false, null, Token, Now, Wait, accessExpiresAt: Now.AddMinutes(-5));
        }

        Assert.Equal(Now + AccountState.Backoff(6), failing.NextAttemptAt);

        // The cap never shortens the in-flight wait after an unknown outcome, nor touches the account's own failures.
        var (unknown, _) = first.Failed(CallStatus.Transient, "timeout", outcomeUnknown: true, null, Token, Now, Wait, accessExpiresAt: Now.AddSeconds(10));
        Assert.Equal(Now + Wait, unknown.NextAttemptAt);
        var (own, _) = first.Failed(CallStatus.Transient, "malformed_response", false, null, Token, Now, Wait, accessExpiresAt: Now.AddSeconds(10));
        Assert.Equal(Now + AccountState.Backoff(2), own.NextAttemptAt);
    }

    [Theory]
    [InlineData("rate_limited")]
    [InlineData("throttled")]
    public void Failed_429_WaitsForRetryAfterOnly_HoweverOften(string reason)
    {
        var state = new AccountState();
        for (var i = 0; i < 3; i++)
        {
            (state, _) = state.Failed(CallStatus.Transient, reason, false, TimeSpan.FromSeconds(2), Token, Now, Wait);
        }

        Assert.Equal(Now.AddSeconds(2), state.NextAttemptAt);
        Assert.Equal(1, state.ConsecutiveFailures);
    }

    [Fact]
    public void Failed_WhileThePlatformIsDown_NeitherCountsNorBacksOff()
    {
        var state = new AccountState();
        for (var i = 0; i < 5; i++)
        {
            (state, _) = state.Failed(CallStatus.Transient, "timeout", outcomeUnknown: true, null, Token, Now, Wait, platformDown: true);
        }

        Assert.Equal(1, state.ConsecutiveFailures);
        Assert.Equal(Now + Wait, state.NextAttemptAt);
        Assert.Equal("timeout", state.LastError);
    }

    [Fact]
    public void Failed_RetryAfterLongerThanTheBackoff_Wins()
    {
        var (state, _) = new AccountState().Failed(CallStatus.Transient, "rate_limited", false, TimeSpan.FromMinutes(7), Token, Now, Wait);

        Assert.Equal(Now.AddMinutes(7), state.NextAttemptAt);
    }

    [Fact]
    public void Failed_InvalidGrant_FlagsReauthorisation()
    {
        var (state, result) = new AccountState().Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now, Wait);

        Assert.True(state.NeedsReauth);
        Assert.Null(state.NextAttemptAt);
        Assert.Equal("invalid_grant: needs re-authorisation", result.Reason);
    }

    [Fact]
    public void FlaggedAndRetried_FlagsAndBacksOff_AnnouncedOnlyWhenNewForTheToken()
    {
        var (first, announced) = new AccountState().FlaggedAndRetried("non_expiring_token_refused", Token, Now);
        var (second, again) = first.FlaggedAndRetried("non_expiring_token_refused", Token, Now.AddMinutes(1));
        var (other, newToken) = second.FlaggedAndRetried("non_expiring_token_refused", "another-token-hash", Now.AddMinutes(3));

        Assert.Equal((true, Now.AddMinutes(1), "non_expiring_token_refused"), (first.NeedsReauth, first.NextAttemptAt, first.LastError));
        Assert.Equal((true, Outcome.Failed, false), (announced.NeedsUser, announced.Outcome, announced.Transient));
        Assert.Equal((true, Now.AddMinutes(3), 2), (second.NeedsReauth, second.NextAttemptAt, second.ConsecutiveFailures));
        Assert.False(again.NeedsUser);
        Assert.Equal((1, Now.AddMinutes(4)), (other.ConsecutiveFailures, other.NextAttemptAt));
        Assert.True(newToken.NeedsUser);
    }

    [Fact]
    public void Failed_InvalidGrantAfterUnknownOutcome_NotBelievedOnce_ThenBelieved()
    {
        var (unknown, _) = new AccountState().Failed(CallStatus.Transient, "timeout", outcomeUnknown: true, null, Token, Now, Wait);
        var (suspect, first) = unknown.Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now.AddDays(2), Wait);
        var (believed, second) = suspect.Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now.AddDays(2).AddMinutes(5), Wait);

        Assert.False(suspect.NeedsReauth);
        Assert.Equal(AccountState.SuspectInvalidGrant, first.Reason);
        Assert.True(first.Transient);
        Assert.True(believed.NeedsReauth);
        Assert.False(second.Transient);
    }

    [Fact]
    public void Failed_UnknownOutcome_WaitsAtLeastTheInFlightWait()
    {
        var (state, _) = new AccountState().Failed(CallStatus.Transient, "timeout", outcomeUnknown: true, null, Token, Now, TimeSpan.FromMinutes(5));

        Assert.Equal(Now.AddMinutes(5), state.NextAttemptAt);
        Assert.Equal(Now, state.UnknownOutcomeAt);
    }

    [Fact]
    public void AfterLostLease_TheFirstInvalidGrantIsNotBelieved_TheSecondIs()
    {
        var lost = new AccountState(LastSuccessAt: Now.AddHours(-1)).AfterLostLease(Token, Now.AddMinutes(-3));
        var (suspect, first) = lost.Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now, Wait);
        var (believed, second) = suspect.Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now.AddMinutes(2), Wait);

        Assert.Equal(Now.AddMinutes(-3), lost.UnknownOutcomeAt);
        Assert.Equal(AccountState.SuspectInvalidGrant, first.Reason);
        Assert.False(suspect.NeedsReauth);
        Assert.True(believed.NeedsReauth);
        Assert.Equal("invalid_grant: needs re-authorisation", second.Reason);
    }

    [Fact]
    public void For_AnotherToken_StartsAfresh_ButKeepsTheLastSuccess()
    {
        var (flagged, _) = new AccountState(LastSuccessAt: Now.AddDays(-1)).Failed(CallStatus.Permanent, "invalid_grant", false, null, Token, Now, Wait);

        var fresh = flagged.For("hash-of-a-new-token");

        Assert.False(fresh.NeedsReauth);
        Assert.Equal(0, fresh.ConsecutiveFailures);
        Assert.Equal(Now.AddDays(-1), fresh.LastSuccessAt);
    }

    [Fact]
    public void Hash_IsSha256HexAndNeverTheToken()
    {
        Assert.Equal("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", AccountState.Hash("test"));
    }
}
