// TokenRefresh as code: the Function app (.NET 10 isolated worker) with everything it needs, in one resource group.
//   cp deploy/main.parameters.example.bicepparam deploy/main.bicepparam   # fill in your values; secrets come from the environment
//   az deployment group create -g RESOURCE_GROUP --parameters deploy/main.bicepparam
// Then publish the code (dotnet publish src/TokenRefresh.Functions -c Release -o publish && (cd publish && zip -r ../app.zip .)):
//   FC1:    az functionapp deployment source config-zip -g RESOURCE_GROUP -n APP_NAME --src app.zip
//   EP1/Y1: az storage blob upload --auth-mode login --account-name STORAGE_NAME -c app-package -n tokenrefresh.zip \
//             -f app.zip --overwrite && az functionapp restart -g RESOURCE_GROUP -n APP_NAME
//           (the uploader needs Storage Blob Data Contributor: set deployerPrincipalId)
// No storage account key, database password or client secret is in any app setting: the app uses a user-assigned
// identity for storage, Key Vault and (databaseAuth=entra) PostgreSQL; secrets are Key Vault references.

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Function app name (globally unique; part of APP_NAME.azurewebsites.net).')
@minLength(2)
@maxLength(60)
param appName string = 'tokenrefresh-${uniqueString(resourceGroup().id)}'

@description('Hosting plan: FC1 Flex Consumption (Linux), EP1 Elastic Premium (Linux) or Y1 Consumption (Windows; Linux Y1 has no .NET 10).')
@allowed([
  'FC1'
  'EP1'
  'Y1'
])
param planSku string = 'FC1'

@description('User-assigned identity name; also the PostgreSQL role name with databaseAuth=entra.')
param identityName string = appName

@description('Storage account for AzureWebJobsStorage and the app package (globally unique).')
@minLength(3)
@maxLength(24)
param storageAccountName string = 'st${uniqueString(resourceGroup().id)}'

@description('Key Vault name (globally unique).')
@minLength(3)
@maxLength(24)
param keyVaultName string = 'kv-${uniqueString(resourceGroup().id)}'

param appInsightsName string = '${appName}-ai'
param logAnalyticsName string = '${appName}-logs'

@description('Days the Log Analytics workspace keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('FC1: memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('FC1: most instances (40 is the lowest maximum Flex Consumption accepts; the timer runs on one at a time).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('EP1/Y1: the blob in the app-package container the app runs from.')
param packageBlobName string = 'tokenrefresh.zip'

@description('Optional object ID of whoever uploads packages (user, group or pipeline principal): Storage Blob Data Contributor.')
param deployerPrincipalId string = ''

@description('REFRESH_SCHEDULE: NCRONTAB, UTC, six fields.')
param refreshSchedule string = '0 */3 * * * *'

@description('ETSY_CLIENT_ID: the Etsy app keystring.')
param etsyClientId string

@description('ETSY_CLIENT_SECRET: the Etsy shared secret, stored in Key Vault.')
@secure()
param etsyClientSecret string

@description('SHOPIFY_API_KEY: the Shopify app API key (an identifier, not a secret).')
param shopifyApiKey string

@description('SHOPIFY_API_SECRET: the Shopify app API secret, stored in Key Vault.')
@secure()
param shopifyApiSecret string

@description('EBAY_CLIENT_ID (App ID): empty leaves eBay off (docs/ebay.md).')
param ebayClientId string = ''

@description('EBAY_CLIENT_SECRET (Cert ID), stored in Key Vault when ebayClientId is set.')
@secure()
param ebayClientSecret string = ''

@description('EBAY_SCOPES: the scopes your users consented to, space-separated (required with ebayClientId).')
param ebayScopes string = ''

@description('entra: the managed identity signs in to PostgreSQL (no password); password: databaseUrl goes to Key Vault.')
@allowed([
  'entra'
  'password'
])
param databaseAuth string = 'entra'

@description('entra: the PostgreSQL server, e.g. my-db.postgres.database.azure.com.')
param databaseHost string = ''

@description('entra: the application database name.')
param databaseName string = ''

param databasePort int = 5432

@description('entra: DATABASE_URL query parameters (docs/database.md#reaching-the-database), e.g. sslmode=verify-full.')
param databaseUrlQuery string = 'sslmode=require'

@description('password: the whole DATABASE_URL (postgresql://user:password@host:5432/db?sslmode=require), stored in Key Vault.')
@secure()
param databaseUrl string = ''

// With local auth off, the worker's traces and the service's metrics both send as the identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING; WorkerTelemetry.IngestionCredential for the metrics).
@description('Application Insights accepts Entra ID ingestion only (the identity gets Monitoring Metrics Publisher).')
param disableLocalAuth bool = false

@description('Action group for the alert rules of deploy/alerts.bicep; empty deploys no alerts.')
param actionGroupId string = ''

@description('Any other app settings (LOG_LEVEL, REFRESH_MAX_CONCURRENCY, OTEL_SERVICE_NAME, ...); the template\'s own win.')
param extraAppSettings object = {}

param tags object = {}

var ebayEnabled = !empty(ebayClientId)
var entraDatabase = databaseAuth == 'entra'

// Created first and granted its roles before the app exists, so the host never starts without access.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'tokenrefresh-storage'
  params: {
    name: storageAccountName
    location: location
    tags: tags
    packageContainerName: 'app-package'
    identityPrincipalId: identity.properties.principalId
    deployerPrincipalId: deployerPrincipalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'tokenrefresh-monitoring'
  params: {
    workspaceName: logAnalyticsName
    appInsightsName: appInsightsName
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    disableLocalAuth: disableLocalAuth
    identityPrincipalId: identity.properties.principalId
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'tokenrefresh-keyvault'
  params: {
    name: keyVaultName
    location: location
    tags: tags
    identityPrincipalId: identity.properties.principalId
    etsyClientSecret: etsyClientSecret
    shopifyApiSecret: shopifyApiSecret
    storeEbaySecret: ebayEnabled
    ebayClientSecret: ebayClientSecret
    storeDatabaseUrl: !entraDatabase
    databaseUrl: databaseUrl
  }
}

// With entra the URL names the identity's role and no password (DatabaseUrl.cs rejects one with DATABASE_AUTH=entra).
var entraDatabaseUrl = 'postgresql://${uriComponent(identity.name)}@${databaseHost}:${databasePort}/${uriComponent(databaseName)}?${databaseUrlQuery}'

var ebaySettings = ebayEnabled ? {
  EBAY_CLIENT_ID: ebayClientId
  EBAY_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.outputs.ebayClientSecretUri})'
  EBAY_SCOPES: ebayScopes
} : {}

// Names as README.md's configuration table; LOG_ACCOUNT_SUCCESS is left to the Function app's own default (false).
var serviceSettings = union(extraAppSettings, {
  REFRESH_SCHEDULE: refreshSchedule
  DATABASE_AUTH: databaseAuth
  DATABASE_URL: entraDatabase ? entraDatabaseUrl : '@Microsoft.KeyVault(SecretUri=${vault.outputs.databaseUrlSecretUri})'
  ETSY_CLIENT_ID: etsyClientId
  ETSY_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.outputs.etsyClientSecretUri})'
  SHOPIFY_API_KEY: shopifyApiKey
  SHOPIFY_API_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.outputs.shopifyApiSecretUri})'
}, ebaySettings)

module functionApp 'modules/functionapp.bicep' = {
  name: 'tokenrefresh-app'
  params: {
    name: appName
    planName: '${appName}-plan'
    location: location
    tags: tags
    planSku: planSku
    identityId: identity.id
    identityClientId: identity.properties.clientId
    storageAccountName: storage.outputs.name
    packageContainerUrl: storage.outputs.packageContainerUrl
    packageBlobName: packageBlobName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    appInsightsEntraAuth: disableLocalAuth
    serviceSettings: serviceSettings
  }
}

// The alert rules join the template when there is someone to notify.
module alerts 'alerts.bicep' = if (!empty(actionGroupId)) {
  name: 'tokenrefresh-alerts'
  params: {
    appInsightsName: monitoring.outputs.appInsightsName
    actionGroupId: actionGroupId
    location: location
    // cloud_RoleName: OTEL_SERVICE_NAME if set, else the app's name (docs/telemetry.md).
    roleName: extraAppSettings.?OTEL_SERVICE_NAME ?? appName
  }
}

output functionAppName string = functionApp.outputs.name
output defaultHostName string = functionApp.outputs.defaultHostName
output identityName string = identity.name
output identityPrincipalId string = identity.properties.principalId
output identityClientId string = identity.properties.clientId
output keyVaultName string = vault.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
output storageAccountName string = storage.outputs.name

// Run once as the server's Microsoft Entra admin, connected to the "postgres" database; then grant the role its
// privileges in the application database (scripts/sql/service-grants.sql with tokenrefresh replaced by the role name).
output postgresCreateRoleStatement string = entraDatabase
  ? 'SELECT * FROM pgaadauth_create_principal_with_oid(\'${identity.name}\', \'${identity.properties.principalId}\', \'service\', false, false);'
  : ''
