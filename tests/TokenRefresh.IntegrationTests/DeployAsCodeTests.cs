using System.Text.Json;
using System.Text.RegularExpressions;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>deploy/main.bicep compiled by the Bicep compiler: the Function app and what it needs, with no key nor secret in a setting.</summary>
public sealed partial class DeployAsCodeTests
{
    [Xunit.Fact]
    public void MainBicep_Compiles_TheAppWithItsIdentity_IdentityBasedStorage_VaultReferences_AndTelemetry()
    {
        var template = Bicep.Build(Repo.File("deploy/main.bicep"));
        var types = Bicep.Resources(template).Select(r => r.GetProperty("type").GetString()!).ToHashSet(StringComparer.OrdinalIgnoreCase);
        foreach (var type in new[]
        {
            "Microsoft.ManagedIdentity/userAssignedIdentities", "Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults",
            "Microsoft.KeyVault/vaults/secrets", "Microsoft.OperationalInsights/workspaces", "Microsoft.Insights/components",
            "Microsoft.Web/serverfarms", "Microsoft.Web/sites", "Microsoft.Authorization/roleAssignments", "Microsoft.Insights/scheduledQueryRules",
        })
        {
            Assert.Contains(type, types);
        }

        var json = template.GetRawText();
        // Identity-based storage: no account key is ever read, and the host is told the account by name.
        Assert.DoesNotContain("listKeys", json, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("AccountKey=", json, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("AzureWebJobsStorage__accountName", json, StringComparison.Ordinal);
        Assert.Contains("\"enableRbacAuthorization\": true", json, StringComparison.Ordinal);
        Assert.Contains("\"allowSharedKeyAccess\": false", json, StringComparison.Ordinal);
        // Roles by their ids: Key Vault Secrets User, Storage Blob Data Owner (the timer's lease), Monitoring Metrics Publisher.
        foreach (var role in new[] { "4633458b-17de-408a-b874-0445c86b69e6", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "3913510d-42f4-4e42-8a64-420c390055eb" })
        {
            Assert.Contains(role, json, StringComparison.Ordinal);
        }

        // Each secret is a Key Vault reference in the app's settings.
        var bicep = File.ReadAllText(Repo.File("deploy/main.bicep"));
        foreach (var secret in new[] { "ETSY_CLIENT_SECRET", "SHOPIFY_API_SECRET", "EBAY_CLIENT_SECRET" })
        {
            Assert.Matches($@"\b{secret}: '@Microsoft\.KeyVault\(SecretUri=\$\{{vault\.outputs\.\w+\}}\)'", bicep);
        }

        Assert.Contains("pgaadauth_create_principal_with_oid", template.GetProperty("outputs").GetProperty("postgresCreateRoleStatement").GetRawText(), StringComparison.Ordinal);
    }

    [Xunit.Fact]
    public void MainBicep_EverySettingItSets_IsOneTheReadmeDocuments()
    {
        var readme = File.ReadAllText(Repo.File("README.md"));
        var bicep = File.ReadAllText(Repo.File("deploy/main.bicep"));
        var settings = Setting().Matches(bicep).Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.Contains("REFRESH_SCHEDULE", settings);
        Assert.Contains("DATABASE_AUTH", settings);
        Assert.All(settings, s => Assert.Contains($"`{s}`", readme, StringComparison.Ordinal));
    }

    [Xunit.Fact]
    public void ParametersExample_BuildsAgainstTheTemplate_WithTheSecretsFromTheEnvironment()
    {
        var built = Bicep.Build(Repo.File("deploy/main.parameters.example.bicepparam"), new Dictionary<string, string>
        {
            ["ETSY_CLIENT_SECRET"] = "example-etsy-secret",
            ["SHOPIFY_API_SECRET"] = "example-shopify-secret",
        });
        using var parameters = JsonDocument.Parse(built.GetProperty("parametersJson").GetString()!);
        var values = parameters.RootElement.GetProperty("parameters");
        Assert.Equal("FC1", values.GetProperty("planSku").GetProperty("value").GetString());
        Assert.Equal("example-etsy-secret", values.GetProperty("etsyClientSecret").GetProperty("value").GetString());
        Assert.Equal(JsonValueKind.Object, values.GetProperty("extraAppSettings").GetProperty("value").ValueKind);
    }

    // An app setting of the service in main.bicep: an upper-case name, then a colon.
    [GeneratedRegex(@"^\s+([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+): ", RegexOptions.Multiline)]
    private static partial Regex Setting();
}
