using Npgsql;
using Polly;
using Polly.Retry;

namespace TokenRefresh.Persistence;

/// <summary>Retries the write of a rotated pair through connection drops, restarts and statement timeouts.</summary>
internal static class DatabaseRetry
{
    /// <summary>However late in the cycle a write first fails, it is retried for at least this long.</summary>
    public static readonly TimeSpan MinimumWindow = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Faults that a later attempt can outlive: connection loss (class 08, any FATAL, idle timeouts 25P03 and 57P05,
    /// a pooler closing the session), restart, statement timeout, lock or serialization conflicts, too many connections,
    /// and a session that is not what the statement expected (<see cref="NeedsFreshConnection"/>).
    /// </summary>
    public static bool IsTransient(Exception e) => e is NpgsqlException n
        // A certificate that is refused now is refused on every retry.
        && n.InnerException is not System.Security.Authentication.AuthenticationException
        && (n.IsTransient
            || n is not PostgresException
            || n is PostgresException { Severity: "FATAL" or "PANIC" }
            || NeedsFreshConnection(e)
            || n is PostgresException p && (p.SqlState.StartsWith("08", StringComparison.Ordinal)
                || p.SqlState is "57014" or "55P03" or "57P01" or "57P02" or "57P03" or "57P05" or "25P03" or "53300" or "40001" or "40P01"));

    /// <summary>
    /// The connection's session is not what the statement expected, as when a pooler hands it another server session:
    /// a prepared statement missing (26000) or there twice (42P05), a cached plan that no longer fits (0A000), no
    /// transaction where one was begun (25P01). The same statement succeeds on a fresh connection, not on this one.
    /// </summary>
    public static bool NeedsFreshConnection(Exception e) => e is PostgresException { SqlState: "26000" or "42P05" or "0A000" or "25P01" };

    /// <summary>What an operator must do about a database fault that no retry outlives, for the Critical line.</summary>
    public static string WhatToFix(Exception e) => e switch
    {
        PostgresException { SqlState: "42501" } p => $"permission denied ({p.SqlState}): grant the service's role UPDATE on the token columns (scripts/sql/service-grants.sql)",
        PostgresException { SqlState: "42P01" or "42703" } p => $"a table or column is missing ({p.SqlState}): check the main application's table against docs/database.md",
        PostgresException p => $"SQLSTATE {p.SqlState}: check the database's health",
        _ => "the database could not be reached until the cycle's budget ended: check its health and the network",
    };

    /// <summary>
    /// Runs <paramref name="query"/> once and, only if that fails with a fault a later attempt can outlive (and the caller
    /// has not cancelled), through the pipeline that <paramref name="retries"/> builds then, which tries again at once and
    /// then backs off. Most calls succeed at once and never build or run a pipeline.
    /// </summary>
    public static async ValueTask<T> OnceThenRetriedAsync<T>(
        Func<CancellationToken, ValueTask<T>> query, Func<ResiliencePipeline> retries, CancellationToken cancellationToken)
    {
        try
        {
            return await query(cancellationToken);
        }
        catch (Exception e) when (IsTransient(e) && !cancellationToken.IsCancellationRequested)
        {
            return await retries().ExecuteAsync(query, cancellationToken);
        }
    }

    /// <summary>
    /// Runs a query that may safely run again (counting, paging, a permit, a claim), retried through a dropped
    /// connection or a restart: once, then again at once and up to five more times over about six seconds; then the
    /// last fault is thrown, and the cycle fails as it would have.
    /// </summary>
    public static ValueTask<T> ReadAsync<T>(TimeProvider time, Func<CancellationToken, ValueTask<T>> query, CancellationToken cancellationToken) =>
        OnceThenRetriedAsync(query, () => ReadPipeline(time), cancellationToken);

    // Built once per clock (the service has one; tests may have another): a permit, a claim or a page runs it every time.
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<TimeProvider, ResiliencePipeline> Read = [];

    private static ResiliencePipeline ReadPipeline(TimeProvider time) => Read.GetValue(time, t => new ResiliencePipelineBuilder { TimeProvider = t }
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
            MaxRetryAttempts = 5,
            BackoffType = DelayBackoffType.Exponential,
            Delay = TimeSpan.FromMilliseconds(200),
        })
        .Build());

    public static ResiliencePipeline Pipeline(TimeProvider time, TimeSpan window) => new ResiliencePipelineBuilder { TimeProvider = time }
        .AddTimeout(window)
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
            MaxRetryAttempts = int.MaxValue,
            BackoffType = DelayBackoffType.Exponential,
            Delay = TimeSpan.FromMilliseconds(200),
            MaxDelay = TimeSpan.FromSeconds(5),
            UseJitter = true,
        })
        .Build();
}
