namespace TokenRefresh.Persistence;

/// <summary>Reads due rows a page at a time (keyset), so a cycle's memory stays flat however many accounts are due.</summary>
internal static class Paging
{
    public const int PageSize = 500;

    /// <summary>Yields every row of every page; <paramref name="page"/> gets the last row of the previous page (default for the first).</summary>
    public static async IAsyncEnumerable<T> ReadAsync<T>(Func<T?, Task<IReadOnlyList<T>>> page)
    {
        T? last = default;
        while (true)
        {
            var rows = await page(last);
            foreach (var row in rows)
            {
                yield return row;
            }

            if (rows.Count < PageSize)
            {
                yield break;
            }

            last = rows[^1];
        }
    }
}
