using System.Text;

namespace TokenRefresh.Persistence;

/// <summary>
/// One of the main application's tables as a platform uses it: the columns it must have, those it may have (all or
/// none), and whether the table itself is optional (a platform the original did not have).
/// </summary>
internal sealed record TableNeeds(string Table, IReadOnlyList<Need> Needs, IReadOnlyList<Need>? Optional = null, bool TableOptional = false);

/// <summary>
/// scripts/sql/service-grants.sql, written from the platforms' registrations: the service's role may read only the
/// columns a platform reads, and update only those it writes (a test keeps the file equal to this).
/// </summary>
internal static class ServiceGrants
{
    public const string Role = "tokenrefresh";

    public static string Script(IEnumerable<TableNeeds> tables)
    {
        var text = new StringBuilder("""
            -- Least privilege for the service's database role, named tokenrefresh, written from the platforms' registrations (a
            -- test keeps it so). Run as the tables' owner, after `tokenrefresh migrate` (which creates the service's own tables), e.g.:
            --   psql "$OWNER_DATABASE_URL" -c "CREATE ROLE tokenrefresh LOGIN PASSWORD 'a-long-random-password'"
            --   psql "$OWNER_DATABASE_URL" -f scripts/sql/service-grants.sql
            -- The service can then read only the columns it needs and update only the columns it writes. Each table's
            -- key column is read from the catalog (user_id and id in the original schema), as the service does.
            GRANT USAGE ON SCHEMA public TO tokenrefresh;

            DO $$
            BEGIN
            """);
        foreach (var table in tables)
        {
            text.Append('\n').Append(Grants(table));
        }

        text.Append("""
            END $$;

            GRANT SELECT, INSERT, UPDATE, DELETE ON token_refresh_state TO tokenrefresh;
            GRANT SELECT, INSERT, UPDATE ON token_refresh_rate, token_refresh_notices TO tokenrefresh;
            GRANT SELECT ON token_refresh_migrations TO tokenrefresh;

            """);
        return text.ToString();
    }

    private static string Grants(TableNeeds table)
    {
        var key = $"""
            (SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = '{table.Table}'::regclass AND i.indisprimary LIMIT 1)
            """;
        var grants = $"""
            REVOKE ALL ON {table.Table} FROM {Role};
            EXECUTE format('GRANT {Columns(table.Needs, "%I")} ON {table.Table} TO {Role}',
                {key.Nested(4)});
            """;
        if (table.Optional is { Count: > 0 } optional)
        {
            var names = string.Join(", ", optional.Select(n => $"'{n.Column}'").Distinct());
            grants += $"""

                -- What the table may have, when it has all of it ({string.Join(", ", optional.Select(n => n.Column).Distinct())}).
                IF (SELECT count(*) FROM information_schema.columns
                    WHERE table_schema = current_schema() AND table_name = '{table.Table}' AND column_name IN ({names})) = {optional.Select(n => n.Column).Distinct().Count()} THEN
                    GRANT {Columns(optional, null)} ON {table.Table} TO {Role};
                END IF;
                """;
        }

        // A platform the original did not have may not have its table yet: its grants wait for it.
        return table.TableOptional
            ? $"    -- {table.Table}, when the main application has it\n    IF to_regclass('{table.Table}') IS NOT NULL THEN\n        {grants.Nested(8)}\n    END IF;\n"
            : $"    -- {table.Table}\n    {grants.Nested(4)}\n";
    }

    // SELECT (the key, then what is read), UPDATE (what is written).
    private static string Columns(IReadOnlyList<Need> needs, string? key)
    {
        var read = needs.Where(n => n.Read).Select(n => n.Column).Distinct().Prepend(key).OfType<string>();
        var written = needs.Where(n => n.Written).Select(n => n.Column).Distinct().ToList();
        return $"SELECT ({string.Join(", ", read)}){(written.Count > 0 ? $", UPDATE ({string.Join(", ", written)})" : "")}";
    }
}
