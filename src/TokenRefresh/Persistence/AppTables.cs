using Dapper;
using Npgsql;

namespace TokenRefresh.Persistence;

/// <summary>The main application's table does not have what the service needs. The message names the table and column.</summary>
public sealed class SchemaException(string message) : Exception(message);

/// <summary>A column the service uses: read, written, or both.</summary>
internal sealed record Need(string Column, bool Read = true, bool Written = false)
{
    /// <summary>What <paramref name="needs"/> read, as reads only (what `status` needs).</summary>
    public static Need[] ReadOnly(IEnumerable<Need> needs) => [.. needs.Where(n => n.Read).Select(n => n with { Written = false })];
}

/// <summary>
/// One of the main application's tables as the catalog describes it now: its single-column primary key and the
/// columns the service uses, with their types. SQL is built from it, so the service follows the table as it is
/// (keyed as the original documents, or by id; timestamps with or without time zone).
/// </summary>
internal sealed class TableShape(string name, string keyColumn, IReadOnlyDictionary<string, string> types, string? optionalMissing)
{
    /// <summary>Key types the service accepts: an account's id travels as text (token_refresh_state.account_id) and back.</summary>
    public static bool IsKeyType(string type) =>
        type is "uuid" or "text" or "integer" or "bigint" || type.StartsWith("character varying", StringComparison.Ordinal);

    public string Name { get; } = name;

    /// <summary>Why the optional columns asked for are not usable (e.g. "no column refresh_token"), or null when they are.</summary>
    public string? OptionalMissing { get; } = optionalMissing;

    /// <summary>The primary key's column name, as the catalog spells it.</summary>
    public string KeyColumn { get; } = keyColumn;

    /// <summary>Whether the table has <paramref name="column"/> and this role may use it as needed.</summary>
    public bool Has(string column) => types.ContainsKey(column);

    /// <summary>The key of the row aliased <paramref name="alias"/>, e.g. <c>a."user_id"</c>: to compare and order by.</summary>
    public string Key(string alias) => $"{alias}.{Quote(KeyColumn)}";

    /// <summary>The key as text, as accounts are named in C# and in token_refresh_state.account_id.</summary>
    public string Id(string alias) => $"{Key(alias)}::text";

    /// <summary>A text parameter holding an id, as a value of the key's type (so the primary key's index serves).</summary>
    public string IdParam(string parameter) => $"CAST({parameter} AS {types[KeyColumn]})";

    /// <summary>A text[] parameter holding ids, as an array of the key's type.</summary>
    public string IdsParam(string parameter) => $"CAST({parameter} AS {types[KeyColumn]}[])";

    /// <summary>Rows after the id in <paramref name="parameter"/> (null: from the first), for keyset paging in key order.</summary>
    public string After(string alias, string parameter) => $"({parameter}::text IS NULL OR {Key(alias)} > {IdParam(parameter)})";

    /// <summary>
    /// A timestamptz parameter as a value of <paramref name="column"/>'s type: a timestamp without time zone holds
    /// UTC, so it gets the UTC wall-clock time whatever the session's TimeZone (comparisons and writes alike).
    /// </summary>
    public string At(string column, string parameter) => IsLocalTimestamp(column) ? $"({parameter}::timestamptz AT TIME ZONE 'UTC')" : parameter;

    /// <summary><paramref name="column"/> of the row aliased <paramref name="alias"/> as a timestamptz.</summary>
    public string Time(string alias, string column) => IsLocalTimestamp(column) ? $"({alias}.{column} AT TIME ZONE 'UTC')" : $"{alias}.{column}";

    private bool IsLocalTimestamp(string column) => types[column].EndsWith("without time zone", StringComparison.Ordinal);

    private IReadOnlyDictionary<string, string> Types => types;

    /// <summary>The same table, as the catalog described it: the statements built for one serve the other.</summary>
    public bool SameAs(TableShape other) =>
        Name == other.Name && KeyColumn == other.KeyColumn && OptionalMissing == other.OptionalMissing
        && Types.Count == other.Types.Count && Types.All(t => other.Types.TryGetValue(t.Key, out var type) && type == t.Value);

    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
}

/// <summary>
/// Reads the main application's tables from the catalog (pg_catalog: what this role may do with each column, and
/// the primary key, whatever the column privileges). Each cycle reads them again, so a migration of the main
/// application takes effect without a restart.
/// </summary>
internal sealed class AppTables(NpgsqlDataSource db, TimeProvider time)
{
    private sealed record CatalogColumn(string Name, string Type, bool InKey, int KeyColumns, bool CanRead, bool CanWrite);

    /// <summary>
    /// The table with the <paramref name="needs"/> it must have (and <paramref name="optional"/> ones it may have:
    /// present only when all of them are there and usable).
    /// </summary>
    /// <exception cref="SchemaException">No such table, no single-column uuid primary key, or a needed column missing, unusable or of the wrong type.</exception>
    public async Task<TableShape> ReadAsync(string table, IReadOnlyList<Need> needs, IReadOnlyList<Need> optional, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT a.attname AS Name, format_type(a.atttypid, a.atttypmod) AS Type,
                   COALESCE(a.attnum = ANY (i.indkey::int2[]), false) AS InKey, COALESCE(i.indnkeyatts, 0)::int AS KeyColumns,
                   has_column_privilege(c.oid, a.attnum, 'SELECT') AS CanRead, has_column_privilege(c.oid, a.attnum, 'UPDATE') AS CanWrite
            FROM pg_class c
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
            WHERE c.oid = to_regclass(@Table)
            ORDER BY a.attnum
            """;
        var columns = await DatabaseRetry.ReadAsync(time, async ct =>
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            return (await connection.ReadRowsAsync<CatalogColumn>(new CommandDefinition(sql, new { Table = table }, cancellationToken: ct))).ToDictionary(c => c.Name);
        }, cancellationToken);

        if (columns.Count == 0)
        {
            throw new SchemaException($"{table}: no such table on this role's search_path (the main application's table; scripts/sql/ shows it)");
        }

        var key = columns.Values.Where(c => c.InKey).Select(c => c.Name).ToList();
        var keyColumns = columns.Values.First().KeyColumns;
        if (keyColumns != 1 || key.Count != 1)
        {
            throw new SchemaException(keyColumns == 0
                ? $"{table}: no primary key; the service needs a single-column primary key to tell its rows apart"
                : $"{table}: its primary key has {keyColumns} columns ({string.Join(", ", key)}); the service needs a single-column primary key");
        }

        var keyColumn = columns[key[0]];
        if (!TableShape.IsKeyType(keyColumn.Type))
        {
            throw new SchemaException($"{table}.{keyColumn.Name}, its primary key, is {keyColumn.Type}; the service needs a uuid, text, varchar, integer or bigint key");
        }

        if (!keyColumn.CanRead)
        {
            throw new SchemaException($"{table}.{keyColumn.Name}: this role cannot read it; apply scripts/sql/service-grants.sql");
        }

        var types = new Dictionary<string, string> { [keyColumn.Name] = keyColumn.Type };
        foreach (var need in needs)
        {
            if (Problem(table, columns, need) is { } problem)
            {
                throw new SchemaException(problem);
            }

            types[need.Column] = columns[need.Column].Type;
        }

        // Said as one line: "TABLE: no column A, B, C", then any other problem.
        var absent = optional.Where(n => !columns.ContainsKey(n.Column)).Select(n => n.Column).Distinct().ToList();
        var optionalProblems = optional.Where(n => columns.ContainsKey(n.Column)).Select(need => Problem(table, columns, need)).OfType<string>()
            .Prepend(absent.Count > 0 ? $"{table}: no column {string.Join(", ", absent)}" : null).OfType<string>().ToList();
        if (optionalProblems.Count == 0)
        {
            foreach (var need in optional)
            {
                types[need.Column] = columns[need.Column].Type;
            }
        }

        return new TableShape(table, keyColumn.Name, types, optionalProblems.Count == 0 ? null : string.Join("; ", optionalProblems));
    }

    private static string? Problem(string table, Dictionary<string, CatalogColumn> columns, Need need)
    {
        if (!columns.TryGetValue(need.Column, out var column))
        {
            return $"{table}: no column {need.Column}";
        }

        if ((need.Read && !column.CanRead) || (need.Written && !column.CanWrite))
        {
            return $"{table}.{need.Column}: this role cannot {(need.Read && !column.CanRead ? "read" : "update")} it; apply scripts/sql/service-grants.sql";
        }

        var expected = need.Column switch
        {
            "token_expires_at" or "refresh_token_expires_at" or "updated_at" =>
                column.Type.StartsWith("timestamp", StringComparison.Ordinal) ? null : "timestamptz, or timestamp holding UTC",
            "is_active" => column.Type == "boolean" ? null : "boolean",
            _ => column.Type is "text" || column.Type.StartsWith("character varying", StringComparison.Ordinal) ? null : "text or varchar",
        };
        return expected is null ? null : $"{table}.{need.Column} is {column.Type}; the service needs {expected}";
    }
}
