using System.Net;
using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using TokenRefresh.Platforms.Etsy;
using TokenRefresh.Settings;

namespace TokenRefresh.Tests;

/// <summary>A cycle keeps a bounded number of re-authorisation events for the webhook, and says how many it did not send.</summary>
public sealed class ReauthEventsTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 7, 12, 0, 0, TimeSpan.Zero));

    [Fact]
    public void ACycleKeepsTheFirstTenThousandEvents_AndCountsTheRest()
    {
        var recorder = new AccountRecorder(new FakeLogger(), new TokenRefreshMetrics(new ServiceCollection().AddMetrics().BuildServiceProvider().GetRequiredService<IMeterFactory>()), false, _time);
        for (var i = 0; i < AccountRecorder.MostReauthEvents + 25; i++)
        {
            recorder.NeedsUser(EtsyPlatform.Description, new DueAccount($"user-{i}"), "refresh_token_ending");
        }

        Assert.Equal(10_000, recorder.Reauth.Count);
        Assert.Equal("user-0", recorder.Reauth[0].AccountId);
        Assert.Equal(25, recorder.ReauthBeyond);
    }

    [Fact]
    public async Task TheEventsBeyondThoseKept_AreSaidNotDelivered_WhileTheKeptOnesAreSent()
    {
        var handler = new Answering();
        var logger = new FakeLogger<ReauthWebhook>();
        var webhook = new ReauthWebhook(new HttpClient(handler), new WebhookSettings(new Uri("https://hooks.example.com/reauth"), new byte[32]), _time, logger);
        ReauthEvent[] events = [.. Enumerable.Range(0, 3).Select(i => new ReauthEvent("needs_reauth", "etsy", $"user-{i}", null, "invalid_grant", _time.GetUtcNow()))];

        await webhook.DeliverAsync(events, beyond: 7);

        Assert.Equal(1, handler.Posts);
        var notDelivered = Assert.Single(logger.Collector.GetSnapshot(), l => l.Id.Id == 703);
        Assert.Equal("Re-authorisation webhook: 7 events not delivered to hooks.example.com (more than 3 in one cycle); they stay in token_refresh_needs_reauth and were announced by NOTIFY", notDelivered.Message);
    }

    private sealed class Answering : HttpMessageHandler
    {
        public int Posts { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Posts++;
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK));
        }
    }
}
