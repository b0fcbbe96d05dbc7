using Npgsql;

namespace TokenRefresh.Tests;

public sealed class DatabaseUrlTests
{
    [Fact]
    public void Parse_HerokuStyleUri_MapsEveryPart()
    {
        var b = DatabaseUrl.Parse("postgres://app_user:s3cret@db.example.com:6543/appdb?sslmode=require");

        Assert.Equal("db.example.com", b.Host);
        Assert.Equal(6543, b.Port);
        Assert.Equal("app_user", b.Username);
        Assert.Equal("s3cret", b.Password);
        Assert.Equal("appdb", b.Database);
        Assert.Equal(SslMode.Require, b.SslMode);
    }

    [Fact]
    public void Parse_PercentEncodedUserAndPassword_AreDecoded()
    {
        var b = DatabaseUrl.Parse("postgresql://user%40tenant:p%40ss%3Aw%2Frd%25@host/db%20name");

        Assert.Equal("user@tenant", b.Username);
        Assert.Equal("p@ss:w/rd%", b.Password);
        Assert.Equal("db name", b.Database);
        Assert.Equal(5432, b.Port);
    }

    [Fact]
    public void Parse_Ipv6HostAndQueryParameters_AreApplied()
    {
        var b = DatabaseUrl.Parse("postgresql://u:p@[::1]:5433/d?sslmode=verify-full&connect_timeout=7&application_name=worker&sslrootcert=/etc/ca.pem");

        Assert.Equal("::1", b.Host);
        Assert.Equal(5433, b.Port);
        Assert.Equal(SslMode.VerifyFull, b.SslMode);
        Assert.Equal(7, b.Timeout);
        Assert.Equal("worker", b.ApplicationName);
        Assert.Equal("/etc/ca.pem", b.RootCertificate);
    }

    [Fact]
    public void Parse_KeyValueString_IsAccepted()
    {
        var b = DatabaseUrl.Parse("Host=localhost;Port=5433;Username=me;Password=pw;Database=app");

        Assert.Equal("localhost", b.Host);
        Assert.Equal(5433, b.Port);
        Assert.Equal("pw", b.Password);
    }

    [Fact]
    public void Parse_AnyForm_LeavesTheSessionTimeZoneAloneAndNamesTheApplication()
    {
        var b = DatabaseUrl.Parse("postgresql://u:p@h/d");

        Assert.Null(b.Timezone);
        Assert.Equal("tokenrefresh", b.ApplicationName);
    }

    [Theory]
    [InlineData("mysql://u:topsecretpw@h/d", "scheme")]
    [InlineData("postgresql://u:topsecretpw@h/d?sslmode=sometimes", "sslmode")]
    [InlineData("postgresql://u:topsecretpw@h/d?frobnicate=1", "frobnicate")]
    [InlineData("postgresql://u:topsecretpw@h/d?connect_timeout=soon", "connect_timeout")]
    [InlineData("Host=h;Password=topsecretpw;Bogus Key=1", "key=value")]
    [InlineData("Password=topsecretpw", "no host")]
    public void Parse_Malformed_NamesTheSettingAndNeverTheValue(string value, string expected)
    {
        var e = Assert.Throws<SettingsException>(() => DatabaseUrl.Parse(value));

        Assert.StartsWith("DATABASE_URL", e.Message, StringComparison.Ordinal);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("topsecretpw", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }
}
