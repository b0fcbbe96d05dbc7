using TokenRefresh.Cli;

namespace TokenRefresh.Tests;

public sealed class DotEnvTests
{
    [Fact]
    public void Read_TypicalFile_ParsesCommentsQuotesAndExport()
    {
        var path = Path.GetTempFileName();
        File.WriteAllText(path, """
            # a comment
            DATABASE_URL=postgresql://u:p@h/d?sslmode=require
            export ETSY_CLIENT_ID="abc def"
            ETSY_CLIENT_SECRET='x#y'
            LOG_LEVEL=DEBUG # trailing comment

            not a setting
            """);
        try
        {
            var values = DotEnv.Read(path);

            Assert.Equal("postgresql://u:p@h/d?sslmode=require", values["DATABASE_URL"]);
            Assert.Equal("abc def", values["ETSY_CLIENT_ID"]);
            Assert.Equal("x#y", values["ETSY_CLIENT_SECRET"]);
            Assert.Equal("DEBUG", values["LOG_LEVEL"]);
            Assert.Equal(4, values.Count);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Read_NoFile_IsEmpty() => Assert.Empty(DotEnv.Read("/nonexistent/.env"));
}
