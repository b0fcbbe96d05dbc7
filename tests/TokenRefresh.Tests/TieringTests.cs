using TokenRefresh.Cli;

namespace TokenRefresh.Tests;

public sealed class TieringTests
{
    [Theory]
    [InlineData("once")]
    [InlineData("status")]
    [InlineData("health")]
    [InlineData("--version")]
    public void Argv_ACommandThatExits_IsNotStartedAgain(string command) =>
        Assert.Null(Tiering.Argv("/app/TokenRefresh.Cli", "/app/TokenRefresh.Cli.dll", [command]));

    [Fact]
    public void Argv_Run_AsTheProgramItself_KeepsEveryArgument() =>
        Assert.Equal(["/app/TokenRefresh.Cli", "tokenrefresh", "run", "--metrics"],
            Tiering.Argv("/app/TokenRefresh.Cli", "/app/TokenRefresh.Cli.dll", ["tokenrefresh", "run", "--metrics"])!);

    [Fact]
    public void Argv_Run_UnderDotnet_PassesTheProgramsDll() =>
        Assert.Equal(["/usr/share/dotnet/dotnet", "/src/bin/TokenRefresh.Cli.dll", "run"],
            Tiering.Argv("/usr/share/dotnet/dotnet", "/src/bin/TokenRefresh.Cli.dll", ["run"])!);
}
