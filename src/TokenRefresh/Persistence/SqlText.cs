namespace TokenRefresh.Persistence;

/// <summary>How statements are put together so that they read, as they run, the way they are written.</summary>
internal static class SqlText
{
    /// <summary>
    /// A fragment of several lines, for a place in a statement whose lines are indented by <paramref name="spaces"/>: its
    /// lines after the first get that indent too.
    /// </summary>
    public static string Nested(this string fragment, int spaces) => fragment.ReplaceLineEndings("\n" + new string(' ', spaces));
}
