// The Function app's storage account (AzureWebJobsStorage and the deployment package), reached by identity only.

@description('Name of the storage account (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

param location string
param tags object

@description('Blob container that holds the app package (Flex Consumption deploys into it; EP1/Y1 run from a blob in it).')
param packageContainerName string

@description('Principal ID of the app\'s user-assigned identity.')
param identityPrincipalId string

@description('Optional principal (user, group or pipeline) that uploads packages: gets Storage Blob Data Contributor.')
param deployerPrincipalId string

// Built-in roles, by ID (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

// What the host needs (learn.microsoft.com/azure/azure-functions/functions-reference#connecting-to-host-storage-with-an-identity):
// Blob Data Owner for host coordination, keys and the timer's blob leases and schedule monitor; Table Data Contributor
// so the host can write its diagnostic events. No Queue Data Contributor: only the blob trigger and Durable Functions
// use queues through AzureWebJobsStorage, and this app has a timer trigger only.
var identityRoles = [
  storageBlobDataOwner
  storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    // No account key anywhere: every client (host, deployment, operators) authenticates with Microsoft Entra ID.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: packageContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource identityRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in identityRoles: {
  name: guid(storage.id, identityPrincipalId, role)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: identityPrincipalId
    // Set so that a just-created identity is not rejected before it has replicated.
    principalType: 'ServicePrincipal'
  }
}]

resource deployerRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(storage.id, deployerPrincipalId, storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: deployerPrincipalId
  }
}

output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output packageContainerUrl string = '${storage.properties.primaryEndpoints.blob}${packageContainer.name}'
