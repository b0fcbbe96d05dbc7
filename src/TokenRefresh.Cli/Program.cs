using TokenRefresh.Cli;

// `run` starts itself again with tiered compilation on (Tiering), before anything else has run.
Tiering.OnForRun(args);
return await CliApp.RunAsync(args, Console.Out, Console.Error);
