// Key Vault with RBAC authorisation holding the service's secrets; the app reads them through Key Vault references.

@description('Name of the vault (3-24 letters, digits and hyphens, globally unique).')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@description('Principal ID of the app\'s user-assigned identity (gets Key Vault Secrets User).')
param identityPrincipalId string

@secure()
param etsyClientSecret string

@secure()
param shopifyApiSecret string

@description('Stored only when eBay is on (ebayClientId set in main.bicep).')
param storeEbaySecret bool

@secure()
param ebayClientSecret string

@description('Stored only when databaseAuth is password.')
param storeDatabaseUrl bool

@secure()
param databaseUrl string

// Key Vault Secrets User: read secret values, nothing else.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Access by Azure roles only, no access policies to drift.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Public endpoint: Consumption plans have no virtual network to reach a private one.
    publicNetworkAccess: 'Enabled'
  }
}

// Secret names allow only letters, digits and hyphens, so they differ from the app setting names.
resource etsySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'etsy-client-secret'
  properties: {
    value: etsyClientSecret
  }
}

resource shopifySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'shopify-api-secret'
  properties: {
    value: shopifyApiSecret
  }
}

resource ebaySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (storeEbaySecret) {
  parent: vault
  name: 'ebay-client-secret'
  properties: {
    value: ebayClientSecret
  }
}

resource databaseUrlSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (storeDatabaseUrl) {
  parent: vault
  name: 'database-url'
  properties: {
    value: databaseUrl
  }
}

resource secretsUserRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identityPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
// Versionless URIs: the app picks up a new secret version within a day, or at once on any configuration change.
output etsyClientSecretUri string = etsySecret.properties.secretUri
output shopifyApiSecretUri string = shopifySecret.properties.secretUri
output ebayClientSecretUri string = ebaySecret.?properties.secretUri ?? ''
output databaseUrlSecretUri string = databaseUrlSecret.?properties.secretUri ?? ''
