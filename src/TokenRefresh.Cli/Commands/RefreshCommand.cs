using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TokenRefresh.Persistence;

namespace TokenRefresh.Cli.Commands;

/// <summary>`tokenrefresh refresh --OPTION KEY`: one account now, through the same claim; its platforms' registrations give the options.</summary>
internal static class RefreshCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var accounts = TokenRefreshExtensions.Platforms.SelectMany(p => p.AccountOptions).DistinctBy(o => o.Name)
            .Select(o => (Account: o, Option: new Option<string>($"--{o.Name}") { Description = o.Description, HelpName = o.HelpName })).ToList();
        var refresh = new Command("refresh", "Refresh (through the same claim and lease) or validate one account now, due or not");
        foreach (var (_, option) in accounts)
        {
            refresh.Options.Add(option);
        }

        var names = accounts.Select(a => $"--{a.Account.Name} {a.Account.HelpName}").ToList();
        var exactlyOne = $"Give exactly one of {string.Join(", ", names[..^1])} or {names[^1]}.";
        refresh.Validators.Add(result =>
        {
            if (accounts.Count(a => result.GetResult(a.Option) is not null) != 1)
            {
                result.AddError(exactlyOne);
            }
        });
        refresh.SetAction((parse, _) =>
        {
            var (account, option) = accounts.Single(a => parse.GetResult(a.Option) is not null);
            return CliHost.RunAsync(stdout, stderr, logToStandardError: true, metrics: false, (services, _, stop) =>
                RunAsync(services, account, parse.GetValue(option)!, stdout, stderr, stop));
        });
        return refresh;
    }

    private static async Task<int> RunAsync(
        IServiceProvider services, AccountOption option, string key, TextWriter stdout, TextWriter stderr, CancellationToken cancellationToken)
    {
        if (!services.GetServices<IPlatform>().Any(p => p.Info.Option.Name == option.Name))
        {
            // An opt-in platform whose settings are not set.
            stderr.WriteLine($"No platform takes --{option.Name} here: its settings are not set.");
            return CliApp.CannotRun;
        }

        try
        {
            if (await services.GetRequiredService<RefreshCycle>().ForceAsync(option.Name, key, cancellationToken) is not { } done)
            {
                stderr.WriteLine(string.Format(System.Globalization.CultureInfo.InvariantCulture, option.NotFound, key));
                return CliApp.CannotRun;
            }

            var (platform, target, result) = done;
            stdout.WriteLine(result.Reason is null
                ? $"{platform} {target}: {result.Outcome.ToString().ToLowerInvariant()}"
                : $"{platform} {target}: {result.Outcome.ToString().ToLowerInvariant()} ({result.Reason})");
            return result.Outcome is Outcome.Failed or Outcome.Skipped ? CliApp.AccountsFailed : CliApp.Success;
        }
        catch (NpgsqlException e)
        {
            return CommandLog.DatabaseFailed(services, e, "refresh");
        }
        catch (SchemaException e)
        {
            stderr.WriteLine(e.Message);
            return CliApp.CannotRun;
        }
    }
}
