using TokenRefresh.IntegrationTests.FunctionsHost;
using TokenRefresh.IntegrationTests.FunctionsHost.Rpc;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests;

/// <summary>
/// A worker the host specialises, as it does in placeholder mode: after init and before it asks for the functions,
/// the host sends FunctionEnvironmentReloadRequest with the app settings. In Azure the pre-started process is the
/// platform's FunctionsNetHost, which sets those settings before it starts this app (docs/azure.md); the app's own
/// worker then receives the same request, which is what this test sends it.
/// </summary>
public sealed class FunctionsSpecialisationTests : HarnessTests
{
    [Fact]
    public async Task Worker_SpecialisedAfterInit_AnswersTheReloadThenRunsTheCycle_AndEchoesNoSetting()
    {
        var settings = new Dictionary<string, string?>(H.Settings) { ["REFRESH_SCHEDULE"] = "0 */3 * * * *" };
        var refresh = H.Fake.Etsy.AddAccount(900);
        var id = await H.Db.AddEtsyUserAsync(refresh, DateTimeOffset.UtcNow.AddMinutes(2), accessToken: $"etsy-access-before-{Guid.NewGuid():N}");
        var before = await H.Db.GetEtsyUserAsync(id);
        await using var host = await HostStandIn.StartAsync(PublishedApps.FunctionApp, settings, WorkerArguments.Both);

        var function = await host.StartAndLoadAsync(specialiseWith: settings);
        var (_, response) = await host.InvokeAsync(function);

        Assert.True(response.Result.Status == StatusResult.Types.Status.Success, response.Result.ToString());
        var issued = H.Fake.Etsy.IssuedFor(refresh) ?? throw new InvalidOperationException("Etsy was not called for a due user");
        var after = await H.Db.GetEtsyUserAsync(id);
        Assert.Equal(issued.RefreshToken, after.RefreshToken);
        Assert.Equal(issued.AccessToken, after.AccessToken);
        Assert.Equal(0, await host.TerminateAsync());
        // The reload request carried every secret the app has: none of them comes back in a log or the worker's output.
        host.AssertNoSecret([refresh, before.AccessToken!, issued.AccessToken, issued.RefreshToken, H.Fake.Etsy.SharedSecret, H.Fake.Shopify.ApiSecret, H.Db.Password]);
    }
}
