using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using TokenRefresh.IntegrationTests.FunctionsHost.Rpc;
using TokenRefresh.IntegrationTests.Infrastructure;
using Kind = TokenRefresh.IntegrationTests.FunctionsHost.Rpc.StreamingMessage.ContentOneofCase;

namespace TokenRefresh.IntegrationTests.FunctionsHost;

/// <summary>The host's side of a worker's life, message by message, as the Functions host runs it.</summary>
internal static class HostConversation
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private static string AppDirectory => PublishedApps.FunctionApp;

    /// <summary>No secret in any log message, exception or property the worker sent, nor in its own output.</summary>
    public static void AssertNoSecret(this HostStandIn host, IEnumerable<string> secrets)
    {
        var everything = string.Join('\n', host.Received.Select(m => m.ToString())) + host.Output;
        Assert.True(host.Logs.Count > 5, $"only {host.Logs.Count} log messages were received");
        foreach (var secret in secrets.Distinct())
        {
            Assert.False(everything.Contains(secret, StringComparison.Ordinal), $"a secret of length {secret.Length} reached the host");
        }
    }

    public static async Task<int> TerminateAsync(this HostStandIn host)
    {
        await host.SendAsync(new StreamingMessage { WorkerTerminate = new WorkerTerminate { GracePeriod = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)) } });
        return await host.WaitForExitAsync(Timeout);
    }

    public static async Task<RpcFunctionMetadata> StartAndLoadAsync(this HostStandIn host, IReadOnlyDictionary<string, string?>? specialiseWith = null)
    {
        var start = await host.ReceiveAsync(Kind.StartStream, Timeout);
        Assert.Equal(host.WorkerId, start.StartStream.WorkerId);

        await host.SendAsync(new StreamingMessage
        {
            RequestId = Guid.NewGuid().ToString(),
            WorkerInitRequest = new WorkerInitRequest
            {
                HostVersion = "4.1044.0.0",
                WorkerDirectory = AppDirectory,
                FunctionAppDirectory = AppDirectory,
                Capabilities = { ["RpcHttpBodyOnly"] = "true", ["TypedDataCollection"] = "true" },
            },
        });
        var init = (await host.ReceiveAsync(Kind.WorkerInitResponse, Timeout)).WorkerInitResponse;
        Assert.True(init.Result.Status == StatusResult.Types.Status.Success, init.Result.ToString());
        if (specialiseWith is not null)
        {
            await host.SpecialiseAsync(specialiseWith);
        }

        await host.SendAsync(new StreamingMessage
        {
            RequestId = Guid.NewGuid().ToString(),
            FunctionsMetadataRequest = new FunctionsMetadataRequest { FunctionAppDirectory = AppDirectory },
        });
        var metadata = (await host.ReceiveAsync(Kind.FunctionMetadataResponse, Timeout)).FunctionMetadataResponse;
        Assert.True(metadata.Result.Status == StatusResult.Types.Status.Success, metadata.Result.ToString());
        var function = Assert.Single(metadata.FunctionMetadataResults);

        // The host turns the reported raw bindings into the load request's binding map.
        var load = new FunctionLoadRequest { FunctionId = function.FunctionId, Metadata = function.Clone() };
        foreach (var raw in function.RawBindings)
        {
            using var binding = JsonDocument.Parse(raw);
            var root = binding.RootElement;
            load.Metadata.Bindings[root.GetProperty("name").GetString()!] = new BindingInfo
            {
                Type = root.GetProperty("type").GetString(),
                Direction = root.GetProperty("direction").GetString()!.Equals("In", StringComparison.OrdinalIgnoreCase)
                    ? BindingInfo.Types.Direction.In : BindingInfo.Types.Direction.Out,
            };
        }

        await host.SendAsync(new StreamingMessage { RequestId = Guid.NewGuid().ToString(), FunctionLoadRequest = load });
        var loaded = (await host.ReceiveAsync(Kind.FunctionLoadResponse, Timeout)).FunctionLoadResponse;
        Assert.Equal(function.FunctionId, loaded.FunctionId);
        Assert.True(loaded.Result.Status == StatusResult.Types.Status.Success, loaded.Result.ToString());
        return function;
    }

    public static async Task<(string InvocationId, InvocationResponse Response)> InvokeAsync(this HostStandIn host, RpcFunctionMetadata function)
    {
        const string Timer = """{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}""";
        var invocationId = Guid.NewGuid().ToString();
        await host.SendAsync(new StreamingMessage
        {
            RequestId = Guid.NewGuid().ToString(),
            InvocationRequest = new InvocationRequest
            {
                InvocationId = invocationId,
                FunctionId = function.FunctionId,
                InputData = { new ParameterBinding { Name = "timer", Data = new TypedData { Json = Timer } } },
                TriggerMetadata =
                {
                    ["timer"] = new TypedData { Json = Timer },
                    ["sys"] = new TypedData { Json = JsonSerializer.Serialize(new { MethodName = function.Name, UtcNow = DateTime.UtcNow, RandGuid = Guid.NewGuid() }) },
                },
                TraceContext = new RpcTraceContext
                {
                    TraceParent = $"00-{Guid.NewGuid():N}-{Guid.NewGuid().ToString("N")[..16]}-01",
                    Attributes = { ["OperationName"] = function.Name },
                },
                RetryContext = new RetryContext { RetryCount = 0, MaxRetryCount = function.RetryOptions.MaxRetryCount },
            },
        });
        var response = (await host.ReceiveAsync(Kind.InvocationResponse, TimeSpan.FromMinutes(2))).InvocationResponse;
        Assert.Equal(invocationId, response.InvocationId);
        return (invocationId, response);
    }

    /// <summary>
    /// What the host sends a worker it started before the app was assigned (placeholder mode), between init and
    /// metadata: the app settings and the app's folder.
    /// </summary>
    public static async Task<FunctionEnvironmentReloadResponse> SpecialiseAsync(this HostStandIn host, IReadOnlyDictionary<string, string?> appSettings)
    {
        var request = new FunctionEnvironmentReloadRequest { FunctionAppDirectory = AppDirectory };
        foreach (var (name, value) in appSettings.Where(s => s.Value is not null))
        {
            request.EnvironmentVariables[name] = value;
        }

        await host.SendAsync(new StreamingMessage { RequestId = Guid.NewGuid().ToString(), FunctionEnvironmentReloadRequest = request });
        var response = (await host.ReceiveAsync(Kind.FunctionEnvironmentReloadResponse, Timeout)).FunctionEnvironmentReloadResponse;
        Assert.True(response.Result.Status == StatusResult.Types.Status.Success, response.Result.ToString());
        return response;
    }
}
