using System.Collections;
using System.Diagnostics;
using System.Text.Json;
using TokenRefresh.Cli;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// A .env written for the original service is read as python-dotenv reads it: one fixture, parsed by python-dotenv
/// itself (Debian's python3-dotenv, which ./scripts/test.sh installs) and by ours, every key compared.
/// </summary>
public sealed class DotEnvConformanceTests
{
    private const string Python = "/usr/bin/python3";

    // Every case from python-dotenv's grammar that a user's file may hold; the last lines end in CRLF.
    private static readonly string Fixture = string.Join("\n",
        "# The original service's .env, as its README shows it, and what people add to one",
        "DATABASE_URL=postgresql://user:pa#ss@db.example.com:5432/app   # a comment after whitespace",
        "ETSY_CLIENT_ID=keystring123",
        "export ETSY_CLIENT_SECRET=\"se#cret with spaces\" # comment after a quoted value",
        "SHOPIFY_API_KEY='single $HOME \\n literal \\' quote \\\\ backslash'",
        "SHOPIFY_API_SECRET=\"line1\\nline2\\ttab \\\"quoted\\\" back\\\\slash \\a\\b\\f\\r\\v \\x41 \\u00e9\"",
        "REFRESH_INTERVAL_MINUTES=3",
        "LOG_LEVEL=INFO",
        "EMPTY=",
        "EMPTY_QUOTED=\"\"",
        "EMPTY_SINGLE=''",
        "SPACES_AROUND   =   value with  inner  spaces   ",
        "HASH_NO_SPACE=a#b",
        "URL_WITH_FRAGMENT=https://example.com/path#anchor",
        "TAB_BEFORE_HASH=value\t# tab comment",
        "EXPANDED=${ETSY_CLIENT_ID}-suffix",
        "EXPANDED_DEFAULT=${MISSING_VARIABLE:-fallback value}",
        "EXPANDED_EMPTY_DEFAULT=${MISSING_VARIABLE:-}",
        "EXPANDED_FROM_PROCESS=${TR_FROM_PROCESS}",
        "SHADOWED=from-file",
        "USES_SHADOWED=${SHADOWED}",
        "NOT_EXPANDED=$ETSY_CLIENT_ID and $ {SPACE}",
        "SINGLE_QUOTED_EXPANSION='${ETSY_CLIENT_ID}'",
        "DOUBLE_QUOTED_EXPANSION=\"${ETSY_CLIENT_ID}\"",
        "LATER_REFERENCE=${DEFINED_LATER}",
        "DEFINED_LATER=late",
        "MULTILINE=\"first line",
        "second line\"",
        "MULTILINE_SINGLE='one",
        "two'",
        "'QUOTED_KEY'=quoted key",
        "KEY_WITHOUT_EQUALS",
        "dotted.key-with-dash=ok",
        "UNICODE=café ☕ ünïcödé",
        "TRAILING_WHITESPACE=value \t ",
        "export   SPACED_EXPORT=yes",
        "exported=not an export keyword",
        "this line is not a binding",
        "BROKEN=\"never closed",
        "AFTER_BROKEN=still read",
        "DUPLICATE=first",
        "DUPLICATE=second",
        "   INDENTED=indented",
        "",
        "",
        "AFTER_BLANKS=after blank lines") + "\n" + string.Join("\r\n",
        "CRLF_UNQUOTED=crlf value",
        "CRLF_QUOTED=\"crlf quoted\"  # comment",
        "CRLF_LAST=last") + "\r\n";

    private static readonly Dictionary<string, string> Process = new()
    {
        ["TR_FROM_PROCESS"] = "from the environment",
        ["SHADOWED"] = "from-process",
    };

    [Fact]
    public async Task Read_TheFixture_GivesWhatPythonDotenvGives_ForEveryKey()
    {
        var path = Path.GetTempFileName();
        await File.WriteAllTextAsync(path, Fixture);
        try
        {
            var python = await PythonDotenvAsync(path);
            var environment = new Hashtable(Process);

            var ours = DotEnv.Read(path, environment);

            Assert.True(python.Count >= 30, $"python-dotenv read only {python.Count} keys");
            Assert.Equal(python.Keys.Order(StringComparer.Ordinal), ours.Keys.Order(StringComparer.Ordinal));
            foreach (var (key, value) in python)
            {
                Assert.True(value == ours[key], $"{key}: python-dotenv gives {JsonSerializer.Serialize(value)}, ours {JsonSerializer.Serialize(ours[key])}");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>What load_dotenv (override=False, the original's call) would set: DotEnv(...).dict() without None values.</summary>
    private static async Task<Dictionary<string, string>> PythonDotenvAsync(string path)
    {
        const string script = """
            import json, sys
            from dotenv.main import DotEnv
            values = DotEnv(sys.argv[1], interpolate=True, override=False).dict()
            print(json.dumps({k: v for k, v in values.items() if v is not None}))
            """;
        var info = new ProcessStartInfo(Python, ["-c", script, path]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (key, value) in Process)
        {
            info.Environment[key] = value;
        }

        foreach (var key in new[] { "ETSY_CLIENT_ID", "MISSING_VARIABLE", "DEFINED_LATER" })
        {
            info.Environment.Remove(key);
        }

        using var process = System.Diagnostics.Process.Start(info)
            ?? throw new InvalidOperationException($"{Python} did not start (./scripts/test.sh installs python3-dotenv)");
        var stdout = await process.StandardOutput.ReadToEndAsync();
        var stderr = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"python-dotenv failed (./scripts/test.sh installs python3-dotenv): {stderr}");
        return JsonSerializer.Deserialize<Dictionary<string, string>>(stdout)!;
    }
}
