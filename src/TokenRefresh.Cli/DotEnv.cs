using System.Collections;
using System.Text;
using System.Text.RegularExpressions;

namespace TokenRefresh.Cli;

/// <summary>
/// Reads a .env file exactly as python-dotenv's load_dotenv (which the original service used) reads it: `export `
/// prefixes, single-quoted keys, single- and double-quoted values (escapes decoded: \\ and \' in single quotes, and
/// \\ \' \" \a \b \f \n \r \t \v in double quotes), values over several lines inside quotes, `#` comments after
/// whitespace, `${VAR}` and `${VAR:-default}` expanded from earlier lines and the environment (the environment wins),
/// empty values, CRLF line ends; lines it cannot parse are skipped. DotNetEnv and dotenv.net differ from it on
/// these (see DotEnvConformanceTests), so this is its grammar, in the same steps.
/// </summary>
internal static partial class DotEnv
{
    /// <summary>The file's values, expanded, for the keys it sets (a key without `=` sets nothing); empty when there is no file.</summary>
    public static Dictionary<string, string?> Read(string path) => Read(path, Environment.GetEnvironmentVariables());

    public static Dictionary<string, string?> Read(string path, IDictionary environment)
    {
        if (!File.Exists(path))
        {
            return new Dictionary<string, string?>(StringComparer.Ordinal);
        }

        // Python reads text files with universal newlines: \r\n and \r become \n before parsing.
        var text = File.ReadAllText(path, Encoding.UTF8).Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        var values = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (key, value) in Parse(text))
        {
            // load_dotenv(override=False): earlier lines of the file, then the environment, which wins.
            values[key] = value is null ? null : Expand(value, name =>
                environment.Contains(name) ? environment[name] as string ?? "" : values.TryGetValue(name, out var earlier) ? earlier ?? "" : null);
        }

        return values.Where(kv => kv.Value is not null).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
    }

    /// <summary>The bindings of the file in order: a key, and its raw value (null for a key without `=`).</summary>
    public static List<(string Key, string? Value)> Parse(string text)
    {
        var reader = new Reader(text);
        var bindings = new List<(string, string?)>();
        while (reader.HasNext)
        {
            if (!TryBinding(reader, out var key, out var value))
            {
                // A line that does not parse is skipped from where it failed, as python-dotenv does (with a warning there).
                reader.Read(RestOfLine());
            }
            else if (key is not null)
            {
                bindings.Add((key, value));
            }
        }

        return bindings;
    }

    /// <returns>False when the text at the reader is not a binding; <paramref name="key"/> is null for a blank or comment line.</returns>
    private static bool TryBinding(Reader reader, out string? key, out string? value)
    {
        key = null;
        value = null;
        reader.Read(MultilineWhitespace());
        if (!reader.HasNext)
        {
            return true;
        }

        reader.Read(Export());
        if (reader.Peek != '#')
        {
            if (reader.Read(reader.Peek == '\'' ? SingleQuotedKey() : UnquotedKey()) is not { } k)
            {
                return false;
            }

            key = k.Groups[1].Value;
        }

        reader.Read(Whitespace());
        if (reader.Peek == '=')
        {
            reader.Read(EqualSign());
            switch (reader.Peek)
            {
                case '\'':
                    if (reader.Read(SingleQuotedValue()) is not { } single)
                    {
                        return false;
                    }

                    value = SingleQuoteEscapes().Replace(single.Groups[1].Value, Unescape);
                    break;
                case '"':
                    if (reader.Read(DoubleQuotedValue()) is not { } quoted)
                    {
                        return false;
                    }

                    value = DoubleQuoteEscapes().Replace(quoted.Groups[1].Value, Unescape);
                    break;
                case null or '\n' or '\r':
                    value = "";
                    break;
                default:
                    value = InlineComment().Replace(reader.Read(UnquotedValue())!.Groups[1].Value, "").TrimEnd();
                    break;
            }
        }

        reader.Read(Comment());
        return reader.Read(EndOfLine()) is not null;
    }

    /// <summary>Where the parser stands in the text; a read advances only when its expression matches there.</summary>
    private sealed class Reader(string text)
    {
        private int _at;

        public bool HasNext => _at < text.Length;

        public char? Peek => _at < text.Length ? text[_at] : null;

        public Match? Read(Regex regex)
        {
            var match = regex.Match(text, _at);
            if (!match.Success)
            {
                return null;
            }

            _at = match.Index + match.Length;
            return match;
        }
    }

    /// <summary>`${NAME}` and `${NAME:-default}`; a `$NAME` without braces stays as it is.</summary>
    private static string Expand(string value, Func<string, string?> lookup) =>
        Variable().Replace(value, m => lookup(m.Groups["name"].Value) ?? (m.Groups["default"].Success ? m.Groups["default"].Value : ""));

    private static string Unescape(Match escape) => escape.Value[1] switch
    {
        'a' => "\a",
        'b' => "\b",
        'f' => "\f",
        'n' => "\n",
        'r' => "\r",
        't' => "\t",
        'v' => "\v",
        var c => c.ToString(),
    };

    // python-dotenv's own expressions, anchored where the reader stands (\G).
    [GeneratedRegex(@"\G\s*")]
    private static partial Regex MultilineWhitespace();

    [GeneratedRegex(@"\G[^\S\r\n]*")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"\G(?:export[^\S\r\n]+)?")]
    private static partial Regex Export();

    [GeneratedRegex(@"\G'([^']+)'")]
    private static partial Regex SingleQuotedKey();

    [GeneratedRegex(@"\G([^=\#\s]+)")]
    private static partial Regex UnquotedKey();

    [GeneratedRegex(@"\G(=[^\S\r\n]*)")]
    private static partial Regex EqualSign();

    [GeneratedRegex(@"\G'((?:\\'|[^'])*)'")]
    private static partial Regex SingleQuotedValue();

    [GeneratedRegex(@"\G""((?:\\""|[^""])*)""")]
    private static partial Regex DoubleQuotedValue();

    [GeneratedRegex(@"\G([^\r\n]*)")]
    private static partial Regex UnquotedValue();

    [GeneratedRegex(@"\G(?:[^\S\r\n]*#[^\r\n]*)?")]
    private static partial Regex Comment();

    [GeneratedRegex(@"\G[^\S\r\n]*(?:\r\n|\n|\r|$)")]
    private static partial Regex EndOfLine();

    [GeneratedRegex(@"\G[^\r\n]*(?:\r|\n|\r\n)?")]
    private static partial Regex RestOfLine();

    [GeneratedRegex(@"\\[\\'""abfnrtv]")]
    private static partial Regex DoubleQuoteEscapes();

    [GeneratedRegex(@"\\[\\']")]
    private static partial Regex SingleQuoteEscapes();

    [GeneratedRegex(@"\s+#.*")]
    private static partial Regex InlineComment();

    [GeneratedRegex(@"\$\{(?<name>[^\}:]*)(?::-(?<default>[^\}]*))?\}")]
    private static partial Regex Variable();
}
