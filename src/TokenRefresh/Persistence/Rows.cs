using System.Data;
using System.Data.Common;
using Dapper;

namespace TokenRefresh.Persistence;

/// <summary>
/// Dapper's row mapping over a reader that reads each row asynchronously. Dapper's own async queries open the reader
/// with SequentialAccess, under which Npgsql reads the part of a row that has not arrived yet synchronously, blocking a
/// thread-pool thread for a network round trip (a page of due rows always spans several packets).
/// </summary>
internal static class Rows
{
    public static async Task<List<T>> ReadRowsAsync<T>(this DbConnection connection, CommandDefinition command)
    {
        await using var reader = await connection.ExecuteReaderAsync(command, CommandBehavior.Default);
        var parse = reader.GetRowParser(typeof(T)); // the untyped parser: the typed one refuses a single-column string
        var rows = new List<T>();
        while (await reader.ReadAsync(command.CancellationToken))
        {
            rows.Add((T)parse(reader));
        }

        return rows;
    }

    /// <summary>The one row the statement returns.</summary>
    public static async Task<T> ReadRowAsync<T>(this DbConnection connection, CommandDefinition command) =>
        (await connection.ReadRowsAsync<T>(command)).Single();

    /// <summary>The row the statement returns, or default when there is none.</summary>
    public static async Task<T?> ReadRowOrDefaultAsync<T>(this DbConnection connection, CommandDefinition command) =>
        (await connection.ReadRowsAsync<T>(command)).SingleOrDefault();
}
