// Runs the fake platforms as a process, for the demo script and docker-compose:
//   dotnet run --project tests/TokenRefresh.FakePlatforms -- --urls http://127.0.0.1:9000 [--latency-ms 50] [--seed path.json]
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using TokenRefresh.FakePlatforms;

var url = "http://127.0.0.1:9000";
var latencyMs = 0;
string? seedPath = null;
for (var i = 0; i < args.Length; i++)
{
    // Accept both "--name value" and "--name=value".
    var (name, inlineValue) = args[i].Split('=', 2) is [var n, var v] ? (n, v) : (args[i], null);
    string Value() => inlineValue ?? (++i < args.Length ? args[i] : throw new ArgumentException($"{name} needs a value."));
    switch (name)
    {
        case "--urls":
            url = Value();
            break;
        case "--latency-ms":
            latencyMs = int.Parse(Value(), NumberStyles.None, CultureInfo.InvariantCulture);
            break;
        case "--seed":
            seedPath = Value();
            break;
        default:
            await Console.Error.WriteLineAsync($"Unknown argument {name}. Usage: --urls URL [--latency-ms N] [--seed path.json]");
            return 2;
    }
}

// Ctrl+C and SIGTERM (docker stop) end the wait below, so the server shuts down cleanly.
var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.TrySetResult();
}

using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

await using var server = await FakePlatformServer.StartAsync(url);
server.Latency = TimeSpan.FromMilliseconds(latencyMs);

if (seedPath is not null)
{
    // {"etsy":[{"refreshToken":"..","fault":"None"}],"shopify":[{"shop":"..","accessToken":"..","fault":"None"}]}
    using var seed = JsonDocument.Parse(await File.ReadAllTextAsync(seedPath));
    var etsyCount = 0;
    var shopifyCount = 0;
    if (seed.RootElement.TryGetProperty("etsy", out var etsy))
    {
        foreach (var account in etsy.EnumerateArray())
        {
            server.Etsy.AddFromJson(account);
            etsyCount++;
        }
    }

    if (seed.RootElement.TryGetProperty("shopify", out var shopify))
    {
        foreach (var store in shopify.EnumerateArray())
        {
            server.Shopify.AddFromJson(store);
            shopifyCount++;
        }
    }

    Console.WriteLine($"Seeded {etsyCount} Etsy accounts and {shopifyCount} Shopify stores");
}

Console.WriteLine($"Fake platforms listening on {server.EtsyBaseUrl}");
Console.Out.Flush();
await stop.Task;
return 0;
