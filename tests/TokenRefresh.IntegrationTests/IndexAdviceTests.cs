using Microsoft.Extensions.Logging.Testing;
using TokenRefresh.IntegrationTests.Infrastructure;
using TokenRefresh.OAuth;

namespace TokenRefresh.IntegrationTests;

/// <summary>The recommended index is advised once, with the statement docs/database.md gives, and only while it is missing.</summary>
public sealed class IndexAdviceTests
{
    [Fact]
    public async Task SlowCount_WithoutTheIndex_AdvisedOnceWithTheDocumentedStatement_WithIt_NotAdvised()
    {
        await using var db = await TestDatabase.CreateAsync();
        await using var connection = await db.OpenAsync();
        var logger = new FakeLogger();
        // Every count counts as slow here: what is tested is what follows.
        var advice = new IndexAdvice(new TokenTable("etsy_users", null, null, null), logger, slow: TimeSpan.Zero);

        Assert.Equal(7, await advice.TimeAsync(connection, "Etsy", () => Task.FromResult(7), CancellationToken.None));
        await advice.TimeAsync(connection, "Etsy", () => Task.FromResult(7), CancellationToken.None);

        var said = Assert.Single(logger.Collector.GetSnapshot());
        Assert.EndsWith("(said once): " + advice.Statement, said.Message, StringComparison.Ordinal);
        Assert.Contains(advice.Statement.Replace("CONCURRENTLY ", "", StringComparison.Ordinal).TrimEnd(';'), File.ReadAllText(Repo.File("docs/database.md"))
            .Replace("CONCURRENTLY ", "", StringComparison.Ordinal), StringComparison.Ordinal);

        await db.ExecuteAsync(advice.Statement.Replace(" CONCURRENTLY", "", StringComparison.Ordinal));
        var fresh = new IndexAdvice(new TokenTable("etsy_users", null, null, null), logger, slow: TimeSpan.Zero);
        await fresh.TimeAsync(connection, "Etsy", () => Task.FromResult(7), CancellationToken.None);

        Assert.Single(logger.Collector.GetSnapshot());
    }
}
