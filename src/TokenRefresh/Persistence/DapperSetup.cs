using System.Data;
using Dapper;

namespace TokenRefresh.Persistence;

/// <summary>Reads timestamptz columns as UTC <see cref="DateTimeOffset"/>, which Dapper does not do by itself.</summary>
internal static class DapperSetup
{
    private static int _done;

    public static void Run()
    {
        if (Interlocked.Exchange(ref _done, 1) == 0)
        {
            SqlMapper.RemoveTypeMap(typeof(DateTimeOffset));
            SqlMapper.AddTypeHandler(new UtcDateTimeOffsetHandler());
        }
    }

    private sealed class UtcDateTimeOffsetHandler : SqlMapper.TypeHandler<DateTimeOffset>
    {
        // Npgsql writes a DateTimeOffset (offset zero, from TimeProvider.GetUtcNow) as timestamptz.
        public override void SetValue(IDbDataParameter parameter, DateTimeOffset value) => parameter.Value = value;

        public override DateTimeOffset Parse(object value) => value switch
        {
            DateTimeOffset offset => offset,
            DateTime time => new DateTimeOffset(DateTime.SpecifyKind(time, DateTimeKind.Utc)),
            _ => throw new InvalidCastException($"Cannot read a {value.GetType().Name} as a timestamp."),
        };
    }
}
