using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Timeout;

namespace TokenRefresh;

/// <summary>The webhook's attempts: its resilience pipeline, and what each attempt's failure is called in a log line.</summary>
public sealed partial class ReauthWebhook
{
    private static readonly HttpRequestOptionsKey<int> EventsKey = new("tokenrefresh.webhook.events");
    private static readonly HttpRequestOptionsKey<int> AttemptKey = new("tokenrefresh.webhook.attempt");

    /// <summary>
    /// The retries and the timeout of each attempt (<paramref name="attemptTimeout"/>): a network error, a timeout, a 408,
    /// a 429 or a 5xx is tried again after its Retry-After, or after 1, 2, 4 and 8 s; the cycle's budget ends any wait.
    /// </summary>
    internal static void AddAttempts(ResiliencePipelineBuilder<HttpResponseMessage> pipeline, IServiceProvider services, TimeSpan attemptTimeout)
    {
        var logger = services.GetRequiredService<ILogger<ReauthWebhook>>();
        pipeline.AddRetry(new HttpRetryStrategyOptions
        {
            MaxRetryAttempts = Retries,
            BackoffType = DelayBackoffType.Exponential,
            Delay = FirstBackoff,
            UseJitter = false,
            ShouldRetryAfterHeader = true,
            OnRetry = args =>
            {
                if (args.Context.GetRequestMessage() is { } request)
                {
                    request.Options.Set(AttemptKey, args.AttemptNumber + 2);
                    var problem = args.Outcome.Exception is { } e ? Problem(e) : $"HTTP {(int)args.Outcome.Result!.StatusCode}";
                    Log.Retrying(logger, request.Options.TryGetValue(EventsKey, out var events) ? events : 0, request.RequestUri!.Host, problem, args.RetryDelay.TotalSeconds);
                }

                return default;
            },
        }).AddTimeout(attemptTimeout);
    }

    private static int Attempts(HttpRequestMessage request) => request.Options.TryGetValue(AttemptKey, out var attempt) ? attempt : 1;

    // Its kind only: never the URL (it may carry the receiver's key) nor the body.
    private static string Problem(Exception e) => e switch
    {
        TimeoutRejectedException => "timeout",
        HttpRequestException { HttpRequestError: HttpRequestError.Unknown } => "network error",
        HttpRequestException h => h.HttpRequestError.ToString(),
        _ => $"unexpected {e.GetType().Name}",
    };
}
