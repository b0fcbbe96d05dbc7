using Dapper;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>The service's row reader (a default-behaviour reader, not Dapper's sequential one) maps every shape the service reads.</summary>
public sealed class RowsTests
{
    private sealed record Row(string Id, string? Label, DateTimeOffset? At);

    [Fact]
    public async Task ReadRows_ManyRowsSpanningPackets_MapsRecordsTuplesAndScalars()
    {
        DapperSetup.Run();
        await using var db = await TestDatabase.CreateAsync(migrated: false);
        await using var connection = await db.OpenAsync();
        // 2,000 rows of about 300 bytes: many network reads, and rows cut across them.
        const string sql = """
            SELECT i::text AS Id, CASE WHEN i % 7 = 0 THEN NULL ELSE repeat('x', 300) || i END AS Label,
                   CASE WHEN i % 5 = 0 THEN NULL ELSE TIMESTAMPTZ '2026-01-01 00:00:00+00' + i * INTERVAL '1 second' END AS At
            FROM generate_series(1, 2000) i ORDER BY i
            """;

        var rows = await connection.ReadRowsAsync<Row>(new CommandDefinition(sql));
        var tuples = await connection.ReadRowsAsync<(string Id, string? Label)>(new CommandDefinition(sql));
        var ids = await connection.ReadRowsAsync<string>(new CommandDefinition(sql));

        Assert.Equal(2000, rows.Count);
        Assert.Equal(new Row("1393", null, new DateTimeOffset(2026, 1, 1, 0, 23, 13, TimeSpan.Zero)), rows[1392]);
        Assert.Equal(new Row("1999", new string('x', 300) + "1999", new DateTimeOffset(2026, 1, 1, 0, 33, 19, TimeSpan.Zero)), rows[1998]);
        Assert.Null(rows[1999].At);
        Assert.Equal(rows.Select(r => (r.Id, r.Label)), tuples);
        Assert.Equal(Enumerable.Range(1, 2000).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), ids);
        Assert.Equal((3L, true), await connection.ReadRowAsync<(long, bool)>(new CommandDefinition("SELECT 3::bigint, true")));
        Assert.Null(await connection.ReadRowOrDefaultAsync<Row>(new CommandDefinition("SELECT '1' AS Id, NULL AS Label, NULL::timestamptz AS At WHERE false")));
        await Assert.ThrowsAsync<InvalidOperationException>(() => connection.ReadRowAsync<string>(new CommandDefinition("SELECT 'a' WHERE false")));
    }
}
