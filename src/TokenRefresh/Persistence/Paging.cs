namespace TokenRefresh.Persistence;

/// <summary>Reads due rows a page at a time (keyset), so a cycle's memory stays flat however many accounts are due.</summary>
internal static class Paging
{
    public const int PageSize = 500;

    /// <summary>
    /// Yields every row of every page; <paramref name="page"/> gets the last row of the previous page (default for
    /// the first). The next page is read while this one is being worked on, so the workers never wait for it.
    /// </summary>
    public static async IAsyncEnumerable<T> ReadAsync<T>(Func<T?, Task<IReadOnlyList<T>>> page)
    {
        var rows = await page(default);
        Task<IReadOnlyList<T>>? next = null;
        try
        {
            while (true)
            {
                next = rows.Count < PageSize ? null : page(rows[^1]);
                foreach (var row in rows)
                {
                    yield return row;
                }

                if (next is null)
                {
                    yield break;
                }

                rows = await next;
                next = null;
            }
        }
        finally
        {
            // The reader stopped early (budget spent): the page read ahead is not needed, but its fault must not go unobserved.
            _ = next?.ContinueWith(t => t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        }
    }
}

/// <summary>Hands out a sequence a few items at a time, to a caller that asks for as many as it can take on now.</summary>
internal sealed class Batches<T>(IAsyncEnumerable<T> source, CancellationToken cancellationToken) : IAsyncDisposable
{
    private IAsyncEnumerator<T>? _items;
    private bool _ended;

    /// <summary>The next items, at most <paramref name="count"/>; fewer only at the end.</summary>
    public async Task<IReadOnlyList<T>> NextAsync(int count)
    {
        _items ??= source.GetAsyncEnumerator(cancellationToken);
        var next = new List<T>(Math.Min(count, Paging.PageSize));
        while (next.Count < count && !_ended)
        {
            if (await _items.MoveNextAsync())
            {
                next.Add(_items.Current);
            }
            else
            {
                _ended = true;
            }
        }

        return next;
    }

    public ValueTask DisposeAsync() => _items?.DisposeAsync() ?? ValueTask.CompletedTask;
}
