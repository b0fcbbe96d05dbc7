using System.CommandLine;
using TokenRefresh.Cli.Commands;
using TokenRefresh.Cli.Commands.Shopify;

namespace TokenRefresh.Cli;

/// <summary>The command line: the commands, their parsing, and the exit codes every command shares.</summary>
internal static class CliApp
{
    public const int Success = 0;
    public const int AccountsFailed = 1;
    public const int CannotRun = 2;

    /// <summary>`run`: no cycle ran by its heartbeat's deadline; the process exits to be started again.</summary>
    public const int Stuck = 3;

    /// <summary>
    /// Runs one command. Usage errors and settings errors exit 2 with one line each on standard error; help and
    /// --version print on standard output and exit 0.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        args = WithoutProgramName(args);

        // `tokenrefresh help [COMMAND...]`, as the CLI took it before.
        if (args is ["help", .. var topic])
        {
            args = [.. topic, "--help"];
        }

        var parsed = Commands(stdout, stderr).Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors)
            {
                stderr.WriteLine(error.Message);
            }

            stderr.WriteLine($"Run '{CommandPath(parsed)} --help' for usage.");
            return CannotRun;
        }

        // No termination timeout: SIGINT and SIGTERM are ours (CliHost), so the calls in flight finish and their pairs are
        // stored; System.CommandLine would end the process two seconds later.
        try
        {
            return await parsed.InvokeAsync(new InvocationConfiguration
            {
                Output = stdout, Error = stderr, ProcessTerminationTimeout = null, EnableDefaultExceptionHandler = false,
            });
        }
        catch (Exception e)
        {
            // Could not run, whatever went wrong (exit 1 means accounts failed): the exception with its stack trace.
            stderr.WriteLine($"tokenrefresh: unexpected error: {e}");
            return CannotRun;
        }
    }

    /// <summary>
    /// A command written out whole (Railway's pre-deploy `tokenrefresh migrate`, `docker run IMAGE tokenrefresh status`)
    /// may reach the image's ENTRYPOINT, which is tokenrefresh, as its arguments: the program's own name is dropped.
    /// </summary>
    internal static string[] WithoutProgramName(string[] args) => args is ["tokenrefresh", .. var rest] ? rest : args;

    private static RootCommand Commands(TextWriter stdout, TextWriter stderr) => new(
        "TokenRefresh keeps the OAuth tokens of your users' shops alive in the main application's PostgreSQL database.\n" +
        "Settings come from environment variables, and from a .env file in the working directory.\n" +
        "Exit codes: 0 all fine, 1 some accounts failed (or the heartbeat is stale), 2 could not run (usage, settings, database).")
    {
        // The image's command name, whatever the file is called (TokenRefresh.Cli, or dotnet TokenRefresh.Cli.dll).
        HelpName = "tokenrefresh",
        Subcommands =
        {
            OnceCommand.Create(stdout, stderr),
            RunCommand.Create(stdout, stderr),
            RefreshCommand.Create(stdout, stderr),
            MigrateCommand.Create(stdout, stderr),
            StatusCommand.Create(stdout, stderr),
            HealthCommand.Create(stdout, stderr),
            new Command("shopify", "Shopify operations") { MigrateExpiringCommand.Create(stdout, stderr) },
        },
    };

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            names.Insert(0, result.Command is RootCommand ? "tokenrefresh" : result.Command.Name);
        }

        return string.Join(' ', names);
    }
}
