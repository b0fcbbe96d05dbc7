namespace TokenRefresh.IntegrationTests.Infrastructure;

/// <summary>Paths in the repository the tests run from.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string File(params string[] parts) => Path.Combine([Root, .. parts]);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (System.IO.File.Exists(Path.Combine(dir.FullName, "TokenRefresh.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TokenRefresh.sln not found above the test assembly.");
    }
}
