using System.Globalization;
using System.Text.RegularExpressions;

namespace TokenRefresh.Tests;

/// <summary>The README's table of settings says what the code declares: every setting once, its default, whether it is required, and its range.</summary>
public sealed partial class ReadmeSettingsTests
{
    [Fact]
    public void SettingsTable_ListsEveryDeclaredSettingOnce_WithItsDefaultRequirementAndRange()
    {
        var rows = Row().Matches(File.ReadAllText(Path.Combine(Root(), "README.md")))
            .Select(m => (Name: m.Groups["name"].Value, Required: m.Groups["required"].Value.Trim(), Default: m.Groups["default"].Value.Trim(), Meaning: m.Groups["meaning"].Value))
            .ToList();
        var declared = TokenRefreshExtensions.Settings;

        Assert.Equal(declared.Select(s => s.Name).Order(), rows.Select(r => r.Name).Order());
        foreach (var setting in declared)
        {
            var row = rows.Single(r => r.Name == setting.Name);
            Assert.True(row.Required == (setting.Required ? "yes" : setting.RequiredWith is { } with ? $"with {with}" : ""), $"{setting.Name}: required '{row.Required}'");
            Assert.True(row.Default == (setting.Default is { } value ? $"`{value}`" : ""), $"{setting.Name}: default '{row.Default}', declared '{setting.Default}'");
            if (setting is { Min: { } min, Max: { } max })
            {
                Assert.True(row.Meaning.Contains($"({Number(min)}–{Number(max)}", StringComparison.Ordinal), $"{setting.Name}: the range ({Number(min)}–{Number(max)}) is not said");
            }
        }
    }

    private static string Number(int n) => n >= 10_000 ? n.ToString("N0", CultureInfo.InvariantCulture) : n.ToString(CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^\| `(?<name>[A-Z_]+)` \|(?<required>[^|]*)\|(?<default>[^|]*)\|(?<meaning>.*)\|\s*$", RegexOptions.Multiline)]
    private static partial Regex Row();

    private static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TokenRefresh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TokenRefresh.sln not found");
    }
}
