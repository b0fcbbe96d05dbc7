namespace TokenRefresh.Settings;

/// <summary>Where the main application's database is, and how the service signs in to it.</summary>
public sealed record DatabaseSettings(string ConnectionString, bool EntraAuthentication)
{
    public static readonly Setting Url = new("DATABASE_URL", "the database, as a postgresql:// URL or an Npgsql connection string") { Required = true };

    public static readonly Setting Auth = new("DATABASE_AUTH", "password, or entra: the password is a Microsoft Entra ID token") { Default = "password" };

    /// <summary>Read by docker compose's migrate service, not by the service.</summary>
    public static readonly Setting MigrateUrl = new("MIGRATE_DATABASE_URL", "docker compose only: the URL the tables' owner migrates with");

    public static readonly IReadOnlyList<Setting> Declared = [Url, Auth, MigrateUrl];

    // The connection string holds the password: never print it.
    public override string ToString() => nameof(DatabaseSettings);

    /// <exception cref="SettingsException">A setting is missing or malformed.</exception>
    public static DatabaseSettings Read(SettingsReader read)
    {
        var database = DatabaseUrl.Parse(read.Required(Url));
        var entra = read.Choice(Auth, new Dictionary<string, bool> { ["password"] = false, ["entra"] = true },
            "password (the default) or entra (a Microsoft Entra ID token, for Azure Database for PostgreSQL)");
        if (entra && !string.IsNullOrEmpty(database.Password))
        {
            throw new SettingsException("DATABASE_URL holds a password, but DATABASE_AUTH=entra takes the password from Microsoft Entra ID: remove it from the URL.");
        }

        if (entra && string.IsNullOrEmpty(database.Username))
        {
            throw new SettingsException("DATABASE_URL names no user: with DATABASE_AUTH=entra it is the Entra principal's name in PostgreSQL (e.g. the managed identity's).");
        }

        return new DatabaseSettings(database.ConnectionString, entra);
    }
}
