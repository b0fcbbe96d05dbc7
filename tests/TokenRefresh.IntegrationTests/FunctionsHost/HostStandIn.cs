using System.Diagnostics;
using System.Net;
using System.Text;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TokenRefresh.IntegrationTests.FunctionsHost.Rpc;
using TokenRefresh.IntegrationTests.Infrastructure;

namespace TokenRefresh.IntegrationTests.FunctionsHost;

/// <summary>How the host names its gRPC address and the worker's ids on the worker's command line.</summary>
public enum WorkerArguments
{
    /// <summary>
    /// --host, --port, --workerId, --requestId, --grpcMaxMessageLength alone: older hosts. Worker 2.x needs the
    /// prefixed form and stops at start without it ("Configuration is missing the 'HostEndpoint'").
    /// </summary>
    Classic,

    /// <summary>--functions-uri, --functions-worker-id, --functions-request-id, --functions-grpc-max-message-length.</summary>
    FunctionsPrefixed,

    /// <summary>Both, as current hosts pass them.</summary>
    Both,
}

/// <summary>
/// The Azure Functions host as an isolated worker sees it: a FunctionRpc gRPC server on loopback that starts
/// the published worker as a process, the way the host does, and exchanges StreamingMessages with it.
/// Every message the worker sends is kept; <see cref="ReceiveAsync"/> waits for the next one of a kind.
/// </summary>
public sealed class HostStandIn : IAsyncDisposable
{
    private const int GrpcMaxMessageLength = int.MaxValue;

    private WebApplication? _server;
    private readonly Channel<StreamingMessage> _toWorker = Channel.CreateUnbounded<StreamingMessage>();
    private readonly Channel<StreamingMessage> _fromWorker = Channel.CreateUnbounded<StreamingMessage>();
    private readonly List<StreamingMessage> _received = [];
    private readonly StringBuilder _output = new();
    private Process? _worker;
    private volatile bool _connected;

    public string WorkerId { get; } = Guid.NewGuid().ToString();

    /// <summary>Every message the worker sent so far, in order.</summary>
    public IReadOnlyList<StreamingMessage> Received
    {
        get { lock (_received) { return [.. _received]; } }
    }

    /// <summary>Every RpcLog the worker sent so far: the host's log stream.</summary>
    public IReadOnlyList<RpcLog> Logs => [.. Received.Where(m => m.ContentCase == StreamingMessage.ContentOneofCase.RpcLog).Select(m => m.RpcLog)];

    /// <summary>The worker's standard output and error, which the host also reads and logs.</summary>
    public string Output
    {
        get { lock (_output) { return _output.ToString(); } }
    }

    public bool WorkerExited => _worker?.HasExited ?? false;

    /// <summary>Starts the gRPC server, then the worker in <paramref name="appDirectory"/> with the app settings as its environment.</summary>
    public static async Task<HostStandIn> StartAsync(string appDirectory, IReadOnlyDictionary<string, string?> appSettings, WorkerArguments style)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc(o => o.MaxReceiveMessageSize = null);
        var host = new HostStandIn();
        builder.Services.AddSingleton(host);
        var app = host._server = builder.Build();
        app.MapGrpcService<FunctionRpcService>();
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;
        host.StartWorker(appDirectory, appSettings, style, port);
        return host;
    }

    private void StartWorker(string appDirectory, IReadOnlyDictionary<string, string?> appSettings, WorkerArguments style, int port)
    {
        var requestId = Guid.NewGuid().ToString();
        string[] classic = ["--host", "127.0.0.1", "--port", $"{port}", "--workerId", WorkerId, "--requestId", requestId, "--grpcMaxMessageLength", $"{GrpcMaxMessageLength}"];
        string[] prefixed = ["--functions-uri", $"http://127.0.0.1:{port}/", "--functions-worker-id", WorkerId, "--functions-request-id", requestId,
            "--functions-grpc-max-message-length", $"{GrpcMaxMessageLength}"];
        string[] arguments = style switch
        {
            WorkerArguments.Classic => classic,
            WorkerArguments.FunctionsPrefixed => prefixed,
            _ => [.. classic, .. prefixed],
        };
        var info = new ProcessStartInfo("dotnet", ["TokenRefresh.Functions.dll", .. arguments])
        {
            WorkingDirectory = appDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // The host gives the worker the app settings as its environment, and nothing of its own configuration.
        info.Environment["FUNCTIONS_WORKER_RUNTIME"] = "dotnet-isolated";
        info.Environment["FUNCTIONS_WORKER_DIRECTORY"] = appDirectory;
        info.Environment["AzureWebJobsScriptRoot"] = appDirectory;
        ServiceEnvironment.Apply(info, appSettings);

        _worker = new Process { StartInfo = info, EnableRaisingEvents = true };
        // A worker that dies before it connects sends nothing more: waits for its messages end at once.
        _worker.Exited += (_, _) =>
        {
            if (!_connected)
            {
                _fromWorker.Writer.TryComplete();
            }
        };
        _worker.OutputDataReceived += (_, e) => Append(e.Data);
        _worker.ErrorDataReceived += (_, e) => Append(e.Data);
        _worker.Start();
        _worker.BeginOutputReadLine();
        _worker.BeginErrorReadLine();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    public ValueTask SendAsync(StreamingMessage message) => _toWorker.Writer.WriteAsync(message);

    /// <summary>The next message of <paramref name="kind"/> from the worker (others are kept in <see cref="Received"/>).</summary>
    public async Task<StreamingMessage> ReceiveAsync(StreamingMessage.ContentOneofCase kind, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var message = await _fromWorker.Reader.ReadAsync(cts.Token);
                if (message.ContentCase == kind)
                {
                    return message;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            throw new TimeoutException($"No {kind} from the worker (exited: {WorkerExited}). Its output:\n{Output}");
        }
    }

    /// <summary>Waits for the worker process to exit; its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await _worker!.WaitForExitAsync(cts.Token);
        _worker.WaitForExit(); // drains the redirected streams
        return _worker.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (_worker is { HasExited: false })
        {
            _worker.Kill(entireProcessTree: true);
            await _worker.WaitForExitAsync();
        }

        _worker?.Dispose();
        _toWorker.Writer.TryComplete();
        if (_server is not null)
        {
            await _server.StopAsync();
            await _server.DisposeAsync();
        }
    }

    /// <summary>The host's end of EventStream: the worker's messages in, the stand-in's messages out.</summary>
    private sealed class FunctionRpcService(HostStandIn host) : FunctionRpc.FunctionRpcBase
    {
        public override async Task EventStream(
            IAsyncStreamReader<StreamingMessage> requestStream, IServerStreamWriter<StreamingMessage> responseStream, ServerCallContext context)
        {
            host._connected = true;
            var reading = Task.Run(async () =>
            {
                try
                {
                    await foreach (var message in requestStream.ReadAllAsync(context.CancellationToken))
                    {
                        lock (host._received)
                        {
                            host._received.Add(message);
                        }

                        await host._fromWorker.Writer.WriteAsync(message);
                    }
                }
                finally
                {
                    host._fromWorker.Writer.TryComplete();
                }
            });

            try
            {
                await foreach (var message in host._toWorker.Reader.ReadAllAsync(context.CancellationToken))
                {
                    await responseStream.WriteAsync(message);
                }
            }
            catch (OperationCanceledException)
            {
                // The worker went away.
            }

            await reading.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }
}
