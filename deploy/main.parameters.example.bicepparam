// Example parameters for deploy/main.bicep: copy, replace the placeholders, deploy (see the header of main.bicep).
// No secret is written here: each @secure() parameter is read from an environment variable when the file is compiled,
//   export ETSY_CLIENT_SECRET=... SHOPIFY_API_SECRET=...   (and EBAY_CLIENT_SECRET, DATABASE_URL when used)
// or, from a vault that already exists, az.getSecret('SUBSCRIPTION_ID', 'RESOURCE_GROUP', 'VAULT_NAME', 'SECRET_NAME').
using './main.bicep'

param planSku = 'FC1'

// Globally unique names; leave out to get tokenrefresh-<hash>, st<hash>, kv-<hash>.
param appName = 'my-tokenrefresh'

param refreshSchedule = '0 */3 * * * *'

param etsyClientId = 'your-etsy-keystring'
param etsyClientSecret = readEnvironmentVariable('ETSY_CLIENT_SECRET')

param shopifyApiKey = 'your-shopify-api-key'
param shopifyApiSecret = readEnvironmentVariable('SHOPIFY_API_SECRET')

// eBay stays off while ebayClientId is empty (docs/ebay.md).
param ebayClientId = ''
param ebayClientSecret = readEnvironmentVariable('EBAY_CLIENT_SECRET', '')
param ebayScopes = ''

// entra: the identity (named appName) signs in; run the postgresCreateRoleStatement output as the Entra admin.
param databaseAuth = 'entra'
param databaseHost = 'my-db.postgres.database.azure.com'
param databaseName = 'app'
param databaseUrlQuery = 'sslmode=require'
// password instead: databaseAuth = 'password' and the whole URL, kept in Key Vault.
param databaseUrl = readEnvironmentVariable('DATABASE_URL', '')

param disableLocalAuth = false

// Alerts (deploy/alerts.bicep) are deployed when an action group is given.
param actionGroupId = ''
// e.g. '/subscriptions/SUBSCRIPTION_ID/resourceGroups/RESOURCE_GROUP/providers/microsoft.insights/actionGroups/oncall'

param extraAppSettings = {
  LOG_LEVEL: 'INFO'
}

param tags = {
  app: 'tokenrefresh'
}
